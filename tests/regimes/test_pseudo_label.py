"""regime=pseudo_label: teacher labels on the pool, never its hidden labels."""

import json

import torch

import cvrun.regimes.teacher as teacher_module
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

    def everything_is_class_0(teacher, cfg, pool, image_size, device, dtype):
        seen["pool_labels"] = pool.labels.copy()
        return torch.tensor([[1.0, 0.0, 0.0]]).repeat(len(pool), 1)
    monkeypatch.setattr(teacher_module, "teacher_probabilities", everything_is_class_0)
    original = teacher_module.standard_job

    def spy(cfg, data, model, device, train_targets=None):
        seen["targets"] = train_targets
        return original(cfg, data, model, device, train_targets=train_targets)
    monkeypatch.setattr(teacher_module, "standard_job", spy)
    summary = train_run(tmp_path / "run", dataset=THREE, trainer={"epochs": 1},
                        regime={"name": "pseudo_label", "teacher": str(source_run), "threshold": 0.5})
    assert (seen["pool_labels"] == -1).all()
    pool_rows = seen["targets"][81:]
    assert len(pool_rows) == 510 and (pool_rows[:, 0] == 1).all() and (pool_rows[:, 1:3] == 0).all()
    assert summary["pseudo_label_acc1"] == 33.33  # a third of the pool really is circles
