"""regime=feature_extract: a frozen pretrained backbone, a new head, optionally on cached features."""

import pytest
import torch

from cvrun.io import load_checkpoint
from cvrun.errors import UserError
from cvrun.models.pretrained import load_source_run
from tests.conftest import train_run

TARGET = {"classes": ["triangle", "cross"]}


@pytest.mark.parametrize("cache, head_layers", [(False, 1), (True, 1), (False, 2)])
def test_only_the_head_trains_and_the_rest_stays_the_source(source_run, tmp_path, cache, head_layers):
    """head_layers=1: the output layer alone is new (the lecture's feature extraction); 2: LeNet-5's F6 too."""
    summary = train_run(tmp_path / "run", dataset=TARGET, model={"pretrained": str(source_run)},
                        regime={"name": "feature_extract", "cache_features": cache, "head_layers": head_layers},
                        optim={"lr": 0.05}, trainer={"epochs": 4})
    assert summary["status"] == "completed" and summary["test_acc1"] >= 75, summary  # chance 50
    output, f6 = 84 * 2 + 2, 120 * 84 + 84
    assert summary["trainable_params"] == (output if head_layers == 1 else f6 + output)
    trained = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["model"]
    source = load_source_run(str(source_run)).model
    for key, tensor in source.backbone.state_dict().items():
        assert torch.equal(trained[f"backbone.{key}"], tensor), key
    assert torch.equal(trained["head.0.weight"], source.head[0].weight) == (head_layers == 1)


def test_cached_features_train_the_same_head_as_the_images(source_run, tmp_path):
    """Without augmentation both see the same features in the same order: the same result."""
    results = [train_run(tmp_path / str(cache), dataset=TARGET, model={"pretrained": str(source_run)},
                         regime={"name": "feature_extract", "cache_features": cache}, trainer={"epochs": 2})
               for cache in (False, True)]
    assert abs(results[0]["test_acc1"] - results[1]["test_acc1"]) <= 1.0, results
    assert abs(results[0]["final_train_loss"] - results[1]["final_train_loss"]) < 1e-3, results


def test_transfer_regimes_need_a_pretrained_source(tmp_path):
    for regime in ("feature_extract", "finetune", "lwf"):
        with pytest.raises(UserError, match=f"regime={regime} needs model.pretrained"):
            train_run(tmp_path / regime, regime={"name": regime})
    with pytest.raises(UserError, match="regime=lwf needs model.pretrained \\(a run folder or checkpoint\\)"):
        train_run(tmp_path / "lwf_imagenet", model={"pretrained": "imagenet"}, regime={"name": "lwf"})
