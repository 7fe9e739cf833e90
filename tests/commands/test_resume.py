"""Ctrl-C / SIGTERM leave a resumable run; trainer.resume carries it on to the metrics of an uninterrupted run."""

import json
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import cli, lock_held_elsewhere

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
    result = cli("train", *RUN, f"hydra.run.dir={cwd / 'whole'}", cwd=cwd)
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

    result = cli("train", f"trainer.resume={run_dir}", cwd=tmp_path)
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
    result = cli("train", f"trainer.resume={run_dir}", "trainer.progress=false", cwd=tmp_path)
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


QUICK = ["dataset=imagefolder", "dataset.image_size=16", "model=lenet5", "trainer.epochs=1", "trainer.progress=false",
         "trainer.deterministic=true"]


def stopped_run(tmp_path, tree):
    """A run on an image-folder tree, marked as stopped before it completed, as Ctrl-C leaves one."""
    from cvrun.cli import main

    run = tmp_path / "run"
    assert main(["train", *QUICK, f"dataset.root={tree}", f"hydra.run.dir={run}"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    return run


def test_resume_takes_the_runs_own_command_and_names_what_would_change(tmp_path, image_tree, monkeypatch, capsys):
    from cvrun.cli import main

    monkeypatch.chdir(tmp_path)
    run = stopped_run(tmp_path, image_tree)
    assert main(["train", *QUICK, "dataset.root=tree", "trainer.epochs=3", f"trainer.resume={run}"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "but trainer.epochs is 1 in the run, 3 here; drop these overrides" in error
    assert "dataset.root" not in error  # the same folder, typed relative to where the command runs
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    assert main(["train", *QUICK, "dataset.root=tree", "trainer.num_workers=0", f"trainer.resume={run}"]) == 0
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


def test_resume_refuses_data_that_changed_and_leaves_the_run_as_it_was(tmp_path, image_tree, monkeypatch, capsys):
    from cvrun.cli import main

    run = stopped_run(tmp_path, image_tree)
    recorded = json.loads((run / "summary.json").read_text())["splits"]
    assert recorded["train"]["per_class"] == {"cat": 9, "dog": 9, "frog": 9} and recorded["test"]["images"] == 9
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["splits"] == recorded
    metrics = (run / "metrics.csv").read_text()
    for i in range(30):
        shutil.copy(image_tree / "train" / "cat" / "0000.png", image_tree / "train" / "cat" / f"extra{i}.png")
    assert main(["train", f"trainer.resume={run}"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "the data differ from what the run trained on: train/cat has 27 more images; val/cat has 3 more" in error
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    assert (run / "metrics.csv").read_text() == metrics
    assert main(["eval", str(run)]) == 0  # eval scores it, saying nothing: the test split is the same
    assert "differs" not in capsys.readouterr().err
    shutil.copy(image_tree / "test" / "dog" / "0000.png", image_tree / "test" / "dog" / "extra.png")
    assert main(["eval", str(run)]) == 0
    assert "note: the test split differs from the one the run was scored on: test/dog has 1 more image" in \
        capsys.readouterr().err


def test_a_run_being_trained_is_locked_against_a_second_resume(tmp_path, image_tree, capsys):
    from cvrun.cli import main

    run = stopped_run(tmp_path, image_tree)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    with lock_held_elsewhere(run) as holder:
        assert main(["train", f"trainer.resume={run}"]) == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"{run} is in use: pid {holder.pid} on {socket.gethostname()} is training there" in error
        assert main(["eval", str(run)]) == 0
        assert f"note: {run} is still training (pid {holder.pid} on" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"} == before


def test_a_folder_that_holds_a_run_is_never_written_again(tmp_path, image_tree, capsys):
    from cvrun.cli import main

    run = stopped_run(tmp_path, image_tree)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file()}
    assert main(["train", *QUICK, f"dataset.root={image_tree}", f"hydra.run.dir={run}"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file()} == before
    empty = tmp_path / "claimed"  # another run was started there a moment ago and holds it
    empty.mkdir()
    with lock_held_elsewhere(empty):
        assert main(["train", *QUICK, f"dataset.root={image_tree}", f"hydra.run.dir={empty}"]) == 2
    assert f"{empty} is in use" in capsys.readouterr().err and [p.name for p in empty.iterdir()] == [".lock"]


def test_ctrl_c_at_the_start_is_a_recorded_interruption_without_a_traceback(tmp_path):
    """SIGINT as soon as the run has its folder: during start-up, data or the first epoch."""
    run_dir = tmp_path / "early"
    process = subprocess.Popen([sys.executable, "-m", "cvrun", "train", *RUN, f"hydra.run.dir={run_dir}"],
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not (run_dir / "train.log").exists() or "run folder:" not in (run_dir / "train.log").read_text():
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    assert "Traceback" not in process.stderr.read()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and f"trainer.resume={run_dir}" in summary["reason"]
