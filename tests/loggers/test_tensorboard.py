"""logger=tensorboard: read back with TensorBoard's own event reader and served by `tensorboard`."""

import shutil
import sys
import threading
import time

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import cli, free_port, get_json, server
from tests.loggers.conftest import RUN, metrics_rows, summary_of


def test_every_metrics_column_per_epoch_and_the_steps_hparams_and_images(logged_run):
    events = EventAccumulator(str(logged_run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    rows = metrics_rows(logged_run)
    for column in rows[0]:
        if column == "epoch":
            continue
        logged = events.Scalars(f"epoch/{column}")
        assert [event.step for event in logged] == [int(row["epoch"]) for row in rows], column
        for event, row in zip(logged, rows):
            assert event.value == pytest.approx(row[column], rel=1e-4, abs=1e-4), column
    losses = events.Scalars("step/train_loss")
    # 270 training images at batch 32: 9 steps an epoch; every 4 steps, and each epoch's last
    assert [event.step for event in losses] == [4, 8, 9, 13, 17, 18, 22, 26, 27]
    rates = [event.value for event in events.Scalars("step/lr")]
    assert 0 <= rates[-1] < rates[1] < rates[0] <= 0.05  # the cosine schedule, step by step
    image = events.Images("train/augmented_images")[0]
    assert (image.width, image.height) == (8 * 40, 2 * 40)  # 16 shapes of 40 px, 8 a row
    assert "hparams/test_acc1" in events.Tags()["scalars"]


def test_tensorboard_serves_the_runs_metrics(logged_run):
    if shutil.which("tensorboard") is None:
        pytest.skip("the tensorboard command is not installed")
    port = free_port()
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logged_run.parent), "--host", "127.0.0.1",
               "--port", str(port)]
    with server(command, "/data/runs", port) as base:
        runs = get_json(base + "/data/runs")
        run = next(name for name in runs if name.endswith("tensorboard"))
        values = get_json(base + f"/data/plugin/scalars/scalars?run={run}&tag=epoch/val_acc1")
    assert [round(v[2], 2) for v in values] == [round(row["val_acc1"], 2) for row in metrics_rows(logged_run)]


def test_a_writer_that_blocks_is_dropped_after_its_timeout(tmp_path, monkeypatch):
    """A hung disk under the event file: the first event that blocks costs its timeout, once, with one warning."""
    from torch.utils.tensorboard import SummaryWriter

    calls, released = [], threading.Event()

    def first_call_hangs(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            released.wait(20)

    monkeypatch.setattr(SummaryWriter, "add_scalar", first_call_hangs)
    started = time.perf_counter()
    result = cli("train", *RUN[:-2], "trainer.epochs=2", "logger=[csv,tensorboard]", "logger.tensorboard.timeout=1",
                 f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    seconds, calls_in_run = time.perf_counter() - started, len(calls)
    released.set()  # the abandoned call returns, and its thread ends the event it was in
    assert result.returncode == 0, result.stderr
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.count("WARNING") == 1
    assert "TensorBoardLogger failed (TimeoutError: on_steps took more than 1 s); the run goes on" in log
    assert summary_of(tmp_path / "run")["status"] == "completed" and len(metrics_rows(tmp_path / "run")) == 2
    assert seconds < 15 and calls_in_run == 1
