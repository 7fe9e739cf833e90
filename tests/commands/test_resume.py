"""Ctrl-C / SIGTERM leave a resumable run; trainer.resume carries it on to the metrics of an uninterrupted run."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import run_cli

RUN = ["dataset=shapes", "dataset.train_size=1500", "dataset.test_size=200", "model=lenet5", "trainer.epochs=5",
       "trainer.batch_size=32", "trainer.deterministic=true", "trainer.seed=7", "trainer.progress=false"]


def metrics_without_timings(run_dir):
    return [line.split(",")[:7] for line in (run_dir / "metrics.csv").read_text().splitlines()]


def interrupt_after_epoch(cwd, run_dir, epochs_done, sig):
    """Start the run, send `sig` once `epochs_done` epochs are in metrics.csv; return the exit status."""
    process = subprocess.Popen([sys.executable, "-m", "cvrun", "train", *RUN, f"hydra.run.dir={run_dir}"],
                               cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = run_dir / "metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) > epochs_done:
            break
        time.sleep(0.05)
    process.send_signal(sig)
    return process.wait(timeout=60)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("resume")
    result = run_cli("train", *RUN, f"hydra.run.dir={cwd / 'whole'}", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return cwd / "whole"


def test_sigint_then_resume_ends_exactly_where_an_uninterrupted_run_does(tmp_path, uninterrupted):
    run_dir = tmp_path / "cut"
    assert interrupt_after_epoch(tmp_path, run_dir, 2, signal.SIGINT) == 130
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs_run"] == 2
    assert summary["reason"].startswith("interrupted by SIGINT after epoch 2 of 5")
    assert f"trainer.resume={run_dir}" in summary["reason"]
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2
    hydra_record = (run_dir / ".hydra" / "overrides.yaml").read_text()

    result = run_cli("train", f"trainer.resume={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    resumed = json.loads((run_dir / "summary.json").read_text())
    whole = json.loads((uninterrupted / "summary.json").read_text())
    assert resumed["status"] == "completed" and resumed["reason"] is None
    assert metrics_without_timings(run_dir) == metrics_without_timings(uninterrupted)  # 5 rows, none twice
    for key in ("test_acc1", "test_acc5", "test_loss", "best_epoch", "best_val_acc1", "epochs_run"):
        assert resumed[key] == whole[key], key
    log = (run_dir / "train.log").read_text()
    assert "interrupted by SIGINT" in log and "resumed from" in log and log.count("epoch 2/5") == 1
    assert (run_dir / ".hydra" / "overrides.yaml").read_text() == hydra_record  # Hydra's record is the original's
    assert [p.name for p in run_dir.parent.iterdir()] == ["cut"]  # no second folder


def test_sigterm_leaves_a_resumable_run(tmp_path):
    run_dir = tmp_path / "cut"
    assert interrupt_after_epoch(tmp_path, run_dir, 1, signal.SIGTERM) == 130
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["reason"].startswith("interrupted by SIGTERM")
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"] >= 1


def test_resume_carries_the_run_after_a_kill_9(tmp_path, uninterrupted):
    """kill -9 leaves status running and perhaps a half-written temporary: resume still carries on."""
    run_dir = tmp_path / "killed"
    assert interrupt_after_epoch(tmp_path, run_dir, 3, signal.SIGKILL) == -signal.SIGKILL
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "running"
    (run_dir / "checkpoints" / ".last.pt.abc.tmp").write_bytes(b"half a checkpoint")
    result = run_cli("train", f"trainer.resume={run_dir}", "trainer.progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))
    assert metrics_without_timings(run_dir) == metrics_without_timings(uninterrupted)


def test_a_second_ctrl_c_exits_at_once_and_corrupts_nothing(tmp_path):
    run_dir = tmp_path / "twice"
    process = subprocess.Popen([sys.executable, "-m", "cvrun", "train", *RUN, f"hydra.run.dir={run_dir}"],
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not (run_dir / "metrics.csv").exists():
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130
    assert "Traceback" not in process.stderr.read()
    json.loads((run_dir / "summary.json").read_text())
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"] in (0, 1)
