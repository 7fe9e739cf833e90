"""What fixmatch and mean_teacher share: the pool's hidden labels score and never train; a resume is exact."""

import csv
import dataclasses

import numpy as np
import pytest
import torch

import cvrun.regimes.consistency as consistency
from tests.conftest import train_run

REGIMES = {
    "fixmatch": {"name": "fixmatch", "mu": 2, "threshold": 0.6, "threshold_mode": "flex"},
    "mean_teacher": {"name": "mean_teacher", "mu": 2, "threshold": 0.6},
}


def small_run(path, regime, **trainer):
    return train_run(path, dataset={"train_size": 500, "labeled_per_class": 10}, optim={"lr": 0.05},
                     regime=REGIMES[regime],
                     trainer={"epochs": 3, "steps_per_epoch": 6, "batch_size": 16, "ema_decay": 0.9, **trainer})


def learned_columns(run):
    """metrics.csv without its timings."""
    with open(run / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k not in ("epoch_seconds", "train_images_per_second")}
                for row in csv.DictReader(f)]


def weights(run):
    return torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)["model"]


@pytest.mark.parametrize("regime", REGIMES)
def test_the_pools_hidden_labels_score_the_pseudo_labels_and_never_reach_the_loss(regime, tmp_path, monkeypatch):
    """The same run on a pool whose hidden labels are shuffled trains to the same bits; only its scores change."""
    honest = small_run(tmp_path / "honest", regime)
    real_pool = consistency.require_pool

    def shuffled_truth(data, name):
        pool = real_pool(data, name)
        return dataclasses.replace(pool, true_labels=np.random.default_rng(0).permutation(pool.true_labels))
    monkeypatch.setattr(consistency, "require_pool", shuffled_truth)
    shuffled = small_run(tmp_path / "shuffled", regime)
    honest_rows, shuffled_rows = learned_columns(tmp_path / "honest"), learned_columns(tmp_path / "shuffled")
    for column in ("train_loss", "train_acc1", "val_loss", "mask_rate"):
        assert [r[column] for r in honest_rows] == [r[column] for r in shuffled_rows], column
    assert [r["pseudo_label_acc1"] for r in honest_rows] != [r["pseudo_label_acc1"] for r in shuffled_rows]
    for name, tensor in weights(tmp_path / "honest").items():
        assert torch.equal(tensor, weights(tmp_path / "shuffled")[name]), name
    assert honest["test_acc1"] == shuffled["test_acc1"]
    assert honest["pseudo_label_acc1"] > shuffled["pseudo_label_acc1"]  # real labels agree with the model more


@pytest.mark.parametrize("regime", REGIMES)
def test_an_interrupted_run_resumes_to_the_uninterrupted_runs_bits(regime, tmp_path, monkeypatch):
    from tests.conftest import interrupt_after_epoch

    whole = small_run(tmp_path / "whole", regime)
    interrupt_after_epoch(monkeypatch, 1)
    with pytest.raises(SystemExit):
        small_run(tmp_path / "cut", regime)
    monkeypatch.undo()
    resumed = small_run(tmp_path / "cut", regime, resume=str(tmp_path / "cut"))
    assert learned_columns(tmp_path / "cut") == learned_columns(tmp_path / "whole")
    for name, tensor in weights(tmp_path / "whole").items():  # FlexMatch's record among them
        assert torch.equal(tensor, weights(tmp_path / "cut")[name]), name
    assert resumed["test_acc1"] == whole["test_acc1"] and resumed["mask_rate"] == whole["mask_rate"]
