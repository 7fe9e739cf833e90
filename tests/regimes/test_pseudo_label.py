"""regime=pseudo_label: teacher labels on the pool, never its hidden labels."""

import json

import torch

import cvrun.regimes.pseudo_label as pseudo_label_module
from cvrun.regimes import Regime
from tests.conftest import train_run

THREE = {"classes": ["circle", "ring", "square"], "labeled_per_class": 30}


def test_pseudo_label_student_learns_and_reports_the_pseudo_labels(source_run, tmp_path):
    summary = train_run(tmp_path / "run", dataset=THREE, optim={"lr": 0.05}, trainer={"epochs": 4},
                        regime={"name": "pseudo_label", "teacher": str(source_run), "threshold": 0.7})
    assert summary["status"] == "completed" and summary["test_acc1"] >= 60, summary
    assert 0 < summary["pseudo_labels_kept"] <= 510 and summary["pseudo_label_pool"] == 510
    assert summary["pseudo_label_acc1"] >= 60
    assert sum(summary["pseudo_label_counts"].values()) == summary["pseudo_labels_kept"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["pseudo_labels_kept"] == summary["pseudo_labels_kept"]


def test_training_targets_come_from_the_teacher_not_the_hidden_labels(source_run, tmp_path, monkeypatch):
    """A teacher that calls everything 'circle': every pool image trains as a circle."""
    seen = {}

    def everything_is_class_0(teacher, loader, cfg, device, dtype):
        seen["pool_labels"] = loader.dataset.samples.labels.copy()
        return torch.tensor([[1.0, 0.0, 0.0]]).repeat(len(loader.dataset), 1)
    monkeypatch.setattr(pseudo_label_module, "teacher_probabilities", everything_is_class_0)
    original = Regime.setup_loaders

    def spy(self, data, extras=None):
        seen["targets"] = extras["target"]
        return original(self, data, extras)
    monkeypatch.setattr(Regime, "setup_loaders", spy)
    summary = train_run(tmp_path / "run", dataset=THREE, trainer={"epochs": 1},
                        regime={"name": "pseudo_label", "teacher": str(source_run), "threshold": 0.5})
    assert (seen["pool_labels"] == -1).all()
    pool_rows = seen["targets"][81:]
    assert len(pool_rows) == 510 and (pool_rows[:, 0] == 1).all() and (pool_rows[:, 1:3] == 0).all()
    assert summary["pseudo_label_acc1"] == 33.33  # a third of the pool really is circles
