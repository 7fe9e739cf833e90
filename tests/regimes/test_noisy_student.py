"""regime=noisy_student: round folders, each student handed on as the next teacher."""

import json
import logging

import pytest
import yaml

from cvrun.commands.eval import load_run
from cvrun.errors import UserError
from tests.conftest import train_run

THREE = {"classes": ["circle", "ring", "square"], "labeled_per_class": 30}


def test_rounds_hand_the_student_on_as_the_next_teacher(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="cvrun"):
        summary = train_run(tmp_path / "run", dataset=THREE, optim={"lr": 0.05}, trainer={"epochs": 2},
                            regime={"name": "noisy_student", "rounds": 2, "students": ["lenet5", "lenet5"],
                                    "soft": True, "noise_aug": "randaug"})
    run = tmp_path / "run"
    for k in (0, 1, 2):
        for name in ("config.yaml", "summary.json", "train.log", "metrics.csv", "checkpoints/best.pt"):
            assert (run / f"round_{k}" / name).is_file(), (k, name)
    for k in (1, 2):
        cfg = yaml.safe_load((run / f"round_{k}" / "config.yaml").read_text())
        assert cfg["regime"]["teacher"] == str(run / f"round_{k - 1}")
        assert cfg["aug"]["name"] == "randaug" and cfg["model"]["name"] == "lenet5"
        assert cfg["regime"]["name"] == "pseudo_label" and cfg["regime"]["soft"] is True
    assert yaml.safe_load((run / "round_0" / "config.yaml").read_text())["regime"]["name"] == "scratch"
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2]
    assert summary["rounds"][0]["pseudo_labels_kept"] is None and summary["rounds"][1]["pseudo_labels_kept"] == 510
    assert summary["test_acc1"] == summary["rounds"][-1]["test_acc1"] and summary["wall_seconds"] > 0
    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk["status"] == "completed"
    for key in ("reason", "best_epoch", "best_val_acc1", "test_acc1", "test_acc5", "test_samples", "epochs_run",
                "seed", "params", "trainable_params", "world_size", "device", "versions", "pseudo_labels_kept",
                "pseudo_label_acc1"):
        assert key in on_disk, key
    assert "noisy_student rounds:" in caplog.text and caplog.text.count("lenet5") >= 3
    with pytest.raises(UserError, match="evaluate one of them, e.g. cvrun eval .*round_1"):
        load_run(run)
    assert load_run(run / "round_2")[0].regime.name == "pseudo_label"


def test_noisy_student_mistakes_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="regime.students lists 1 models but regime.rounds=2"):
        train_run(tmp_path / "a", dataset=THREE, regime={"name": "noisy_student", "rounds": 2, "students": ["lenet5"]})
    with pytest.raises(UserError, match="regime.noise_aug: unknown aug 'noise'; valid aug options"):
        train_run(tmp_path / "b", dataset=THREE, regime={"name": "noisy_student", "noise_aug": "noise"})
    with pytest.raises(UserError, match="regime.students: unknown model resnet9"):
        train_run(tmp_path / "c", dataset=THREE, regime={"name": "noisy_student", "rounds": 1, "students": ["resnet9"]})
