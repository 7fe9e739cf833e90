"""Faults of the disk and signals at any moment: each ends with a recorded status, one line, and good files."""

import errno
import importlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from cvrun.io import load_checkpoint
from cvrun.engine.rundir import RunFolder
from cvrun.engine.runtime import Interrupted
from cvrun.io import StorageError
from tests.conftest import full_disk_for, train_run

TINY = {"dataset": {"train_size": 100, "test_size": 40}, "trainer": {"epochs": 2}}


def tiny_run(path: Path, **trainer) -> dict:
    return train_run(path, dataset=dict(TINY["dataset"]), trainer={**TINY["trainer"], **trainer})


def summary_of(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.mark.parametrize("name", ["config.yaml", "last.pt", "best.pt", "metrics.csv", "curves.png"])
def test_a_full_disk_at_any_write_is_one_error_and_a_failed_status(tmp_path, monkeypatch, name):
    full_disk_for(monkeypatch, name)
    with pytest.raises(StorageError) as caught:
        tiny_run(tmp_path / "run")
    message = str(caught.value)
    assert f"/{name}: No space left on device (ENOSPC)" in message and "\n" not in message
    summary = summary_of(tmp_path / "run")
    assert summary["status"] == "failed" and summary["reason"] == message
    assert not list((tmp_path / "run").rglob("*.tmp"))
    if name == "curves.png":  # after the last epoch: where the weights are and how to score them
        assert "training finished (test top-1" in message and "`cvrun eval" in message
        load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    if name in ("best.pt", "metrics.csv"):  # the first epoch's end: the last whole last.pt stays
        assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == (name == "metrics.csv")


def test_a_full_disk_for_the_final_summary_still_tells_the_test_score_and_the_weights(tmp_path, monkeypatch):
    write = RunFolder.write_summary

    def no_room_for_completion(self, summary):
        if summary["status"] == "completed":
            raise StorageError(self.path / "summary.json", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
        write(self, summary)

    monkeypatch.setattr(RunFolder, "write_summary", no_room_for_completion)
    with pytest.raises(StorageError, match=r"training finished \(test top-1 [\d.]+%, best weights in .*best.pt\); "
                                           r"once there is room, `cvrun eval .*` gives the test score"):
        tiny_run(tmp_path / "run")
    assert summary_of(tmp_path / "run")["status"] == "failed"


STAGES = {  # where each stage of a run can be stopped
    "data decoding": "cvrun.regimes.base.build_splits",
    "the first checkpoint": "cvrun.engine.rundir.RunFolder.save_checkpoint",
    "validation": "cvrun.engine.trainer.evaluate",
    "the final test evaluation": "cvrun.engine.trainer._Loop.test_best",
    "the curve plot": "cvrun.report.record.plot_curves",
}


def resolve(dotted: str):
    """The object a dotted path names: a module's function, or a class's method."""
    module_name, _, attribute = dotted.rpartition(".")
    try:
        owner = importlib.import_module(module_name)
    except ModuleNotFoundError:
        module_name, _, class_name = module_name.rpartition(".")
        owner = getattr(importlib.import_module(module_name), class_name)
    return getattr(owner, attribute)


@pytest.mark.parametrize("stage", STAGES)
def test_a_signal_at_any_stage_leaves_an_interrupted_run_that_resumes(tmp_path, monkeypatch, stage):
    """The handlers turn SIGINT/SIGTERM into Interrupted wherever the run is; raised once at each stage here."""
    signals, real = ["SIGTERM"], resolve(STAGES[stage])

    def interrupted(*args, **kwargs):
        if signals:
            raise Interrupted(signals.pop())
        return real(*args, **kwargs)

    monkeypatch.setattr(STAGES[stage], interrupted)
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as caught:
        tiny_run(run)
    assert caught.value.code == 130
    summary = summary_of(run)
    assert summary["status"] == "interrupted" and summary["reason"].startswith("interrupted by SIGTERM")
    assert f"carry on with trainer.resume={run}" in summary["reason"]
    monkeypatch.undo()
    resumed = tiny_run(run, resume=str(run))
    assert resumed["status"] == "completed" and resumed["epochs_run"] == 2
    assert len((run / "metrics.csv").read_text().splitlines()) == 3  # a header and two epochs, none twice
    if stage == "the final test evaluation":
        assert "during the final test evaluation" in summary["reason"] and "it runs the test alone" in summary["reason"]


def test_a_signal_that_breaks_matplotlib_still_leaves_an_interrupted_run(tmp_path, monkeypatch):
    """A signal inside matplotlib's import leaves it unimportable (AttributeError on the next import); the run's
    status is recorded all the same, and a completed run still fails on a figure it cannot draw."""
    calls = []

    def plot_after_a_cut_import(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise Interrupted("SIGTERM")
        raise AttributeError("module 'matplotlib' has no attribute 'get_data_path'")

    monkeypatch.setattr("cvrun.report.record.plot_curves", plot_after_a_cut_import)
    with pytest.raises(SystemExit) as caught:
        tiny_run(tmp_path / "run")
    assert caught.value.code == 130 and len(calls) == 2
    assert summary_of(tmp_path / "run")["status"] == "interrupted"
    with pytest.raises(AttributeError):
        tiny_run(tmp_path / "second")


def mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def test_a_real_full_disk_ends_with_one_line_and_the_previous_checkpoint(tmp_path):
    disk = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    if shutil.which("mount") is None or not mount_tmpfs(disk, "640k"):
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        run = disk / "run"
        result = subprocess.run(
            [sys.executable, "-m", "cvrun", "train", "dataset=shapes", "dataset.train_size=100",
             "dataset.test_size=20", "model=lenet5", "trainer.epochs=2", "trainer.progress=false",
             f"hydra.run.dir={run}"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1, result.stderr
        assert lines[-1].startswith(f"cvrun: error: cannot write {run}/") and "(ENOSPC)" in lines[-1], result.stderr
        assert "Traceback" not in result.stderr and "Logging error" not in result.stderr
        summary = summary_of(run)
        assert summary["status"] == "failed" and "ENOSPC" in summary["reason"]
        assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] in (0, 1)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
