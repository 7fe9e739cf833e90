"""The one trainer: it learns, writes the run folder, checkpoints what resume needs, repeats itself."""

import csv
import json
import re

import pytest
import torch

from cvrun.commands.train import run_callbacks
from cvrun.engine.rundir import RunFolder
from cvrun.engine.runtime import seed_everything
from cvrun.models import build_model
from cvrun.regimes import REGIMES
from tests.conftest import make_cfg


def shapes_run(tmp_path, name="run", lr=0.02, train_size=1000, val_fraction=0.1, **trainer):
    cfg = make_cfg(
        dataset={"name": "shapes", "image_size": 32, "train_size": train_size, "test_size": 200,
                 "val_fraction": val_fraction},
        model={"name": "lenet5"}, optim={"lr": lr},
        trainer={"epochs": 10, "batch_size": 32, "progress": False, "deterministic": True, **trainer})
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
    run = RunFolder(tmp_path / name)
    return REGIMES.get("scratch")(cfg, run, run_callbacks(cfg, run)).start(), run


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return shapes_run(tmp_path_factory.mktemp("trainer"))


def test_training_learns_well_above_chance(finished):
    summary, _ = finished
    assert summary["status"] == "completed"
    assert summary["test_acc1"] >= 45, summary  # chance is 20 with five classes
    assert summary["test_samples"] == 200


def test_run_folder_files_and_summary_keys(finished):
    summary, run = finished
    for name in ("metrics.csv", "summary.json", "curves.png", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run.path / name).is_file(), name
    on_disk = json.loads((run.path / "summary.json").read_text())
    for key in ("status", "reason", "best_epoch", "best_val_acc1", "test_acc1", "test_acc5", "test_samples",
                "epochs_run", "wall_seconds", "seed", "params", "trainable_params", "world_size", "device",
                "versions"):
        assert key in on_disk, key
    assert on_disk["epochs_run"] == 10 and set(on_disk["versions"]) == {"python", "torch", "torchvision", "cvrun"}
    rows = list(csv.DictReader((run.path / "metrics.csv").open()))
    assert len(rows) == 10 and float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    best_row = max(rows, key=lambda r: float(r["val_acc1"]))
    assert on_disk["best_val_acc1"] == round(float(best_row["val_acc1"]), 2)


def test_checkpoints_hold_what_resume_needs(finished):
    _, run = finished
    last = torch.load(run.path / "checkpoints/last.pt", weights_only=True)
    for key in ("model", "optimizer", "scheduler", "scaler", "ema", "epoch", "best_val_acc1", "metrics", "rng",
                "config", "class_names"):
        assert key in last, key
    assert last["epoch"] == 10 and len(last["metrics"]) == 10
    best = torch.load(run.path / "checkpoints/best.pt", weights_only=True)
    assert best["epoch"] == json.loads((run.path / "summary.json").read_text())["best_epoch"]
    assert best["config"]["model"]["name"] == "lenet5"


def test_same_seed_same_metrics_to_the_digit(tmp_path, finished):
    first, first_run = finished
    second, second_run = shapes_run(tmp_path)
    assert (first_run.path / "metrics.csv").read_text().split("\n")[0] == \
        (second_run.path / "metrics.csv").read_text().split("\n")[0]
    strip = lambda text: [row.split(",")[:7] for row in text.splitlines()]  # noqa: E731  (drop timings)
    assert strip((first_run.path / "metrics.csv").read_text()) == strip((second_run.path / "metrics.csv").read_text())
    assert first["test_acc1"] == second["test_acc1"]


def test_ema_weights_are_evaluated_and_checkpointed(tmp_path):
    summary, run = shapes_run(tmp_path, epochs=2, ema_decay=0.9)
    best = torch.load(run.path / "checkpoints/best.pt", weights_only=True)
    assert best["ema"] is not None and summary["status"] == "completed"
    assert not torch.equal(best["ema"]["head.2.weight"], best["model"]["head.2.weight"])


def test_diverging_loss_fails_the_run(tmp_path):
    """No validation split: epoch 1's last update breaks the weights unseen, and epoch 2's first loss tells."""
    with pytest.raises(SystemExit) as exit_:
        shapes_run(tmp_path, name="diverge", lr=1e6, train_size=64, val_fraction=0.0, epochs=2)  # two batches an epoch
    assert exit_.value.code == 1
    summary = json.loads((tmp_path / "diverge" / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert re.search(r"training loss became (nan|inf) at step [34] \(epoch 2\); checkpoints/last.pt keeps epoch 1",
                     summary["reason"]), summary["reason"]
    # Epoch 1's losses were finite: its checkpoint is the last one the run could check, and stays.
    assert summary["epochs_run"] == 1
    assert torch.load(tmp_path / "diverge" / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    assert summary["reason"].endswith("lower optim.lr or set trainer.grad_clip")


def test_a_loss_diverging_from_a_tiny_std_names_the_input_statistics(tmp_path):
    from tests.conftest import train_run

    with pytest.raises(SystemExit):
        train_run(tmp_path / "run", dataset={"train_size": 70, "std": [1e-8, 1e-8, 1e-8]}, trainer={"epochs": 2})
    reason = json.loads((tmp_path / "run" / "summary.json").read_text())["reason"]
    assert "dataset.std=[1e-08, 1e-08, 1e-08] has a value near 0" in reason and "optim.lr" not in reason


def test_best_epoch_is_higher_top1_and_on_a_tie_lower_loss():
    from types import SimpleNamespace

    from cvrun.engine.trainer import _Loop

    best = SimpleNamespace(best_val_acc1=45.0, best_val_loss=1.2)
    assert _Loop.improves(best, {"acc1": 45.004, "loss": 1.1})
    assert not _Loop.improves(best, {"acc1": 45.0, "loss": 1.3})
    assert _Loop.improves(best, {"acc1": 50.0, "loss": 9.0})
    assert not _Loop.improves(best, {"acc1": 40.0, "loss": 0.1})
    assert _Loop.improves(SimpleNamespace(best_val_acc1=None, best_val_loss=None), None)


def test_compile_keeps_the_plain_checkpoint_keys():
    from cvrun.engine.trainer import place_model

    cfg = make_cfg(model={"name": "lenet5"}, trainer={"compile": True, "channels_last": True})
    model = build_model(cfg.model, 5, 32)
    keys = list(model.state_dict())
    placed = place_model(model, cfg.trainer, torch.device("cpu"))
    assert placed._compiled_call_impl is not None  # compiled lazily, on the first call
    assert list(placed.state_dict()) == keys  # no _orig_mod. prefix: checkpoints load into plain models
    assert placed.backbone[0].weight.is_contiguous(memory_format=torch.channels_last)


def train_losses(run_dir):
    return [float(row["train_loss"]) for row in csv.DictReader((run_dir / "metrics.csv").open())]


def test_accumulating_4_batches_of_32_follows_1_batch_of_128(tmp_path):
    """LeNet-5 has no batch norm: four quarter-batch gradients, each scaled by 1/4, sum to the whole batch's."""
    from tests.conftest import train_run

    common = {"dataset": {"train_size": 1024, "val_fraction": 0.0}, "optim": {"lr": 0.05}}
    whole = train_run(tmp_path / "whole", trainer={"epochs": 3, "batch_size": 128}, **common)
    parts = train_run(tmp_path / "parts", trainer={"epochs": 3, "batch_size": 32, "accumulate": 4}, **common)
    assert train_losses(tmp_path / "parts") == pytest.approx(train_losses(tmp_path / "whole"), rel=1e-4)
    assert abs(parts["test_acc1"] - whole["test_acc1"]) <= 0.5
    train_run(tmp_path / "single", trainer={"epochs": 1, "batch_size": 32}, **common)
    assert train_losses(tmp_path / "single") != pytest.approx(train_losses(tmp_path / "parts")[:1], rel=1e-4)


def test_early_stopping_ends_a_run_without_gains_and_a_resume_keeps_its_count(tmp_path, monkeypatch):
    from tests.conftest import interrupt_after_epoch, train_run

    never_enough = {"epochs": 10, "early_stop_patience": 2, "early_stop_min_delta": 100.0}
    summary = train_run(tmp_path / "whole", trainer=never_enough)
    assert summary["status"] == "completed" and summary["stopped_early"] is True and summary["epochs_run"] == 3
    interrupt_after_epoch(monkeypatch, 2)
    with pytest.raises(SystemExit):
        train_run(tmp_path / "cut", trainer=never_enough)
    monkeypatch.undo()
    resumed = train_run(tmp_path / "cut", trainer={**never_enough, "resume": str(tmp_path / "cut")})
    assert resumed["stopped_early"] is True and resumed["epochs_run"] == 3
    assert resumed["test_acc1"] == summary["test_acc1"]


def test_a_callback_ending_the_run_after_an_epoch_records_its_status_untested(tmp_path):
    from cvrun.engine.events import Callback, EndRun

    class PruneAfterSecondEpoch(Callback):
        def on_epoch_end(self, row, rows):
            if row["epoch"] == 2:
                raise EndRun("pruned", "pruned after epoch 2")

    cfg = make_cfg(dataset={"name": "shapes", "image_size": 32, "train_size": 200, "test_size": 50},
                   model={"name": "lenet5"}, trainer={"epochs": 5, "batch_size": 32, "progress": False})
    run = RunFolder(tmp_path / "run")
    summary = REGIMES.get("scratch")(cfg, run, [*run_callbacks(cfg, run), PruneAfterSecondEpoch()]).start()
    assert (summary["status"], summary["reason"], summary["epochs_run"]) == ("pruned", "pruned after epoch 2", 2)
    assert "test_acc1" not in summary and summary["best_val_acc1"] is not None
    assert json.loads((run.path / "summary.json").read_text())["status"] == "pruned"
    assert len(list(csv.DictReader((run.path / "metrics.csv").open()))) == 2
    assert (run.path / "checkpoints" / "best.pt").is_file()


@pytest.mark.parametrize("val_fraction, lr, reason", [
    (0.1, 1e9, "validation loss became nan in epoch 1; checkpoints/last.pt keeps epoch 0"),
    (0.0, float("inf"), "the weights became non-finite in epoch 1; checkpoints/last.pt keeps epoch 0"),
    (0.0, 1e9, "test loss became nan with the weights of epoch 1")])
def test_a_last_update_that_diverges_fails_the_run(tmp_path, val_fraction, lr, reason):
    """One step an epoch: its loss is read before the update that breaks the weights, so only the epoch's end sees
    it: the validation loss, else the weights themselves (non-finite ones never become best.pt), else the test loss
    (finite weights so large that the loss overflows)."""
    from tests.conftest import train_run

    with pytest.raises(SystemExit) as exit_:
        train_run(tmp_path / "run", dataset={"train_size": 60, "test_size": 20, "val_fraction": val_fraction},
                  optim={"lr": lr}, trainer={"epochs": 1, "batch_size": 1000})
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert exit_.value.code == 1 and summary["status"] == "failed", summary
    assert summary["reason"].startswith(reason), summary["reason"]
    best = tmp_path / "run" / "checkpoints" / "best.pt"
    assert best.exists() == reason.startswith("test loss")
    if best.exists():  # the weights it holds are finite: only their loss overflowed
        assert all(torch.isfinite(t).all() for t in torch.load(best, weights_only=True)["model"].values())


def test_an_epoch_with_a_nan_validation_loss_fails_the_run_and_never_becomes_best(tmp_path, monkeypatch):
    from cvrun.engine import trainer
    from tests.conftest import train_run

    real_evaluate, calls = trainer.evaluate, []

    def nan_loss_in_epoch_2(*args, **kwargs):
        calls.append(1)
        return {**real_evaluate(*args, **kwargs), **({"loss": float("nan")} if len(calls) == 2 else {})}

    monkeypatch.setattr(trainer, "evaluate", nan_loss_in_epoch_2)
    with pytest.raises(SystemExit):
        train_run(tmp_path / "run", dataset={"train_size": 100, "test_size": 20}, trainer={"epochs": 3})
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["reason"].startswith("validation loss became nan in epoch 2")
    assert summary["epochs_run"] == 1 and summary["best_epoch"] == 1
    assert torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)["epoch"] == 1


def test_early_stopping_counts_an_equal_top1_as_no_gain(tmp_path):
    """At lr 1e-7 nothing moves: validation top-1 stays flat, and patience 2 ends the run after epoch 3."""
    from tests.conftest import train_run

    summary = train_run(tmp_path / "run", dataset={"train_size": 100, "test_size": 20}, optim={"lr": 1e-7},
                        trainer={"epochs": 6, "early_stop_patience": 2})
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert len({row["val_acc1"] for row in rows}) == 1, rows
    assert summary["stopped_early"] is True and summary["epochs_run"] == 3


def test_a_resume_without_last_pt_is_refused_and_leaves_the_run_as_it_was(tmp_path, monkeypatch):
    from cvrun.errors import ResumeRefused
    from tests.conftest import interrupt_after_epoch, train_run

    tiny = {"dataset": {"train_size": 100, "test_size": 20}}
    interrupt_after_epoch(monkeypatch, 1)
    with pytest.raises(SystemExit):
        train_run(tmp_path / "run", trainer={"epochs": 2}, **tiny)
    monkeypatch.undo()
    (tmp_path / "run" / "checkpoints" / "last.pt").unlink()
    best = (tmp_path / "run" / "checkpoints" / "best.pt").read_bytes()
    with pytest.raises(ResumeRefused, match=r"checkpoints/last.pt is missing, so the trained epochs \(checkpoints/"
                                            r"best.pt, summary.json's 1 epoch\(s\)\) cannot be carried on; start "
                                            r"anew in another folder \(leave trainer.resume out\)"):
        train_run(tmp_path / "run", trainer={"epochs": 2, "resume": str(tmp_path / "run")}, **tiny)
    assert (tmp_path / "run" / "checkpoints" / "best.pt").read_bytes() == best
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "interrupted"


def test_the_log_starts_with_a_header_and_each_epoch_line_gives_the_lr_and_the_eta(tmp_path, caplog):
    import logging

    from tests.conftest import train_run

    with caplog.at_level(logging.INFO, logger="cvrun"):
        train_run(tmp_path / "run", dataset={"train_size": 100, "test_size": 20}, trainer={"epochs": 2})
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:5] == [f"run folder: {tmp_path / 'run'}", "device cpu, precision 32",
                         "model lenet5: 61,581 parameters (61,581 trainable)",
                         "data shapes: 5 classes; images: train 90, val 10, test 20",
                         "regime scratch: 2 epochs of 3 steps, batch 32"], lines
    assert re.match(r"epoch 1/2  lr 0.02  train loss .* \([\d.]+s, \d+ img/s, ETA \d+s\)", lines[5]), lines[5]
    assert re.match(r"epoch 2/2  lr 0.01 .*, ETA 0s\)", lines[6]), lines[6]


def test_a_validation_split_without_some_classes_is_one_warning(tmp_path, caplog):
    """4 labels of each of 5 classes and val_fraction 0.1: 2 validation images, so 3 classes have none."""
    import logging

    from tests.conftest import train_run

    with caplog.at_level(logging.WARNING, logger="cvrun"):
        train_run(tmp_path / "run", dataset={"train_size": 100, "test_size": 20, "labeled_per_class": 4},
                  trainer={"epochs": 1})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("the validation split (2 images) has none of 3 of the 5 "
                                                         "classes ("), warnings


def test_a_slow_evaluation_shows_a_progress_bar_unless_progress_is_off(monkeypatch, capsys):
    from torch.utils.data import DataLoader, TensorDataset

    from cvrun.engine import evaluate as evaluation
    from cvrun.engine.evaluate import ToDevice

    monkeypatch.setattr(evaluation, "PROGRESS_DELAY", 0.0)  # as if each batch took long
    loader = DataLoader(TensorDataset(torch.randn(8, 3), torch.tensor([0, 1] * 4)), batch_size=2)
    for progress in ("test", None):
        evaluation.evaluate(torch.nn.Linear(3, 2), loader, ToDevice(torch.device("cpu")), progress=progress)
        assert ("test:   0%|" in capsys.readouterr().err) == (progress is not None)


# issue 25: trainer.monitor, balanced top-1 and macro-F1
def test_balanced_top1_and_macro_f1_match_scikit_learn_on_a_hand_made_confusion():
    from sklearn.metrics import balanced_accuracy_score, f1_score

    from cvrun.engine.evaluate import balanced_acc1, macro_f1

    # Rows: true class, columns: predicted. Class 2 has no images but is predicted; class 3 is never predicted.
    confusion = torch.tensor([[50, 3, 2, 0], [10, 5, 0, 0], [0, 0, 0, 0], [1, 0, 4, 0]])
    truth = [t for t in range(4) for p in range(4) for _ in range(int(confusion[t, p]))]
    predicted = [p for t in range(4) for p in range(4) for _ in range(int(confusion[t, p]))]
    with pytest.warns(UserWarning):  # scikit-learn's note on the predicted class without images
        assert balanced_acc1(confusion) == pytest.approx(100 * balanced_accuracy_score(truth, predicted))
    assert macro_f1(confusion) == pytest.approx(100 * f1_score(truth, predicted, average="macro", zero_division=0))
    assert balanced_acc1(confusion) == pytest.approx(100 * (50 / 55 + 5 / 15 + 0 / 5) / 3)


# Two classes, 90 and 10 validation images: per epoch the confusion and loss the scripted validation reports.
SCRIPTED_VAL = [([[90, 0], [10, 0]], 1.0),  # top-1 90 (best), balanced 50
                ([[80, 10], [2, 8]], 1.2),  # top-1 88, balanced 84.4 (best), macro-F1 best
                ([[85, 5], [7, 3]], 0.8),  # top-1 88, balanced 62.2, lowest loss
                ([[70, 20], [1, 9]], 0.9)]  # top-1 79, balanced 83.9


def scripted_validation(monkeypatch):
    """The trainer's validation returns SCRIPTED_VAL's results in turn (the test split is scored for real)."""
    from cvrun.engine import trainer

    results = iter(SCRIPTED_VAL)

    def evaluate(*args, **kwargs):
        confusion, loss = next(results)
        confusion = torch.tensor(confusion)
        acc1 = 100.0 * confusion.trace().item() / confusion.sum().item()
        return {"loss": loss, "acc1": acc1, "acc5": 100.0, "samples": 100, "confusion": confusion}
    monkeypatch.setattr(trainer, "evaluate", evaluate)


# (val_acc1 would choose epoch 1: the default's choice is tested above.)
@pytest.mark.parametrize("monitor, best_epoch", [("val_balanced_acc1", 2), ("val_macro_f1", 2), ("val_loss", 3)])
def test_the_monitor_chooses_best_pt(tmp_path, monkeypatch, monitor, best_epoch):
    from tests.conftest import train_run

    scripted_validation(monkeypatch)
    summary = train_run(tmp_path / "run", dataset={"train_size": 40, "test_size": 10, "classes": ["circle", "ring"]},
                        trainer={"epochs": 4, "monitor": monitor})
    assert summary["best_epoch"] == best_epoch and summary["monitor"] == monitor
    assert torch.load(tmp_path / "run" / "checkpoints/best.pt", weights_only=True)["epoch"] == best_epoch
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert summary[f"best_{monitor}"] == round(float(rows[best_epoch - 1][monitor]), 4 if monitor == "val_loss" else 2)
    assert [round(float(row["val_balanced_acc1"]), 1) for row in rows] == [50.0, 84.4, 62.2, 83.9]
    assert float(rows[1]["val_macro_f1"]) == max(float(row["val_macro_f1"]) for row in rows)
    present = [value for value in summary["test_per_class_acc1"].values() if value is not None]
    assert summary["test_balanced_acc1"] == pytest.approx(sum(present) / len(present), abs=0.01)
    assert 0 <= summary["test_macro_f1"] <= 100


def test_early_stopping_counts_gains_of_the_monitor_lower_for_the_loss():
    from types import SimpleNamespace

    from cvrun.engine.trainer import _Loop

    def loop(monitor):
        trainer = SimpleNamespace(monitor=monitor, early_stop_patience=2, early_stop_min_delta=0.05, epochs=10)
        return SimpleNamespace(cfg=SimpleNamespace(trainer=trainer), gain=None, stale_epochs=0, epoch=0,
                               stopped_early=False)

    by_loss = loop("val_loss")
    for epoch, loss in enumerate([1.0, 0.9, 0.88, 0.5]):  # 0.88 is no gain of more than 0.05
        by_loss.epoch = epoch
        _Loop.count_towards_early_stop(by_loss, {"loss": loss, "acc1": 50.0})
        assert by_loss.stale_epochs == [0, 0, 1, 0][epoch]
    by_macro_f1 = loop("val_macro_f1")
    for epoch, f1 in enumerate([40.0, 45.0, 45.0, 44.0]):
        by_macro_f1.epoch = epoch
        _Loop.count_towards_early_stop(by_macro_f1, {"macro_f1": f1, "loss": 1.0, "acc1": 50.0})
    assert by_macro_f1.stopped_early and by_macro_f1.gain == 45.0
