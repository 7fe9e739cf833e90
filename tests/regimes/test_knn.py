"""regime=knn: cosine k-NN votes in chunks, on pixels or on a pretrained backbone's features."""

import pytest
import torch
import torch.nn.functional as F

import cvrun.regimes.knn as knn
from cvrun.errors import UserError
from tests.conftest import CIFAR10, needs_cifar10, train_run


def test_votes_count_the_k_most_similar_and_chunks_change_nothing(monkeypatch):
    memory = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.2]]), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 2])
    queries = F.normalize(torch.tensor([[1.0, 0.05], [0.05, 1.0], [-1.0, 0.0]]), dim=1)
    votes = knn.knn_votes(memory, labels, queries, k=2, num_classes=3, weighted=False)
    assert votes.tolist() == [[2, 0, 0], [0, 2, 0], [0, 1, 1]]
    weighted = knn.knn_votes(memory, labels, queries, k=2, num_classes=3, weighted=True)
    assert weighted[2].argmax().item() == 2  # the nearer neighbour outweighs the farther
    monkeypatch.setattr(knn, "QUERY_CHUNK", 1)
    assert torch.equal(knn.knn_votes(memory, labels, queries, 2, 3, True), weighted)
    assert knn.topk_accuracy(votes.float(), torch.tensor([0, 1, 2]), 1) == pytest.approx(100 * 2 / 3)


def test_knn_on_a_pretrained_backbone_writes_a_run_without_training(source_run, tmp_path):
    summary = train_run(tmp_path / "run", dataset={"classes": ["triangle", "cross"]},
                        model={"pretrained": str(source_run)}, regime={"name": "knn", "k": 5})
    assert summary["status"] == "completed" and summary["test_acc1"] >= 70, summary
    assert summary["trainable_params"] == 0 and summary["test_samples"] == 80 and summary["epochs_run"] == 0
    assert summary["best_val_acc1"] is not None and summary["feature_dim"] == 120
    with pytest.raises(UserError, match="regime=knn needs model.pretrained"):
        train_run(tmp_path / "bare", regime={"name": "knn"})


@needs_cifar10
def test_raw_pixel_knn_on_cifar10_is_far_above_chance(tmp_path):
    summary = train_run(tmp_path / "run", dataset={**CIFAR10, "subset": 5000,
                                                   "image_size": 32, "std": [0.5, 0.5, 0.5]},
                        regime={"name": "knn", "features": "pixels", "k": 20})
    assert summary["test_samples"] == 10000 and summary["feature_dim"] == 3072
    assert 25 <= summary["test_acc1"] <= 45, summary  # chance 10; 5,000 images in memory


def test_eval_of_a_knn_run_says_there_is_nothing_to_evaluate(tmp_path):
    from cvrun.commands.eval import load_run

    train_run(tmp_path / "run", dataset={"classes": ["triangle", "cross"]}, regime={"name": "knn", "features": "pixels"})
    with pytest.raises(UserError, match="regime=knn run: it trains no weights"):
        load_run(tmp_path / "run")
