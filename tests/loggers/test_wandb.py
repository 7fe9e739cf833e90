"""logger=wandb, offline: the W&B run files read back record by record (wandb's own protobuf Record in its
LevelDB-style log: 32 KiB blocks of chunks, each with a 7-byte header), against the run folder's files."""

import json
import os
import struct
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import cli, single
from tests.loggers.conftest import metrics_rows, summary_of

RUN = ["dataset=shapes", "dataset.train_size=120", "dataset.test_size=30", "dataset.image_size=32", "model=lenet5",
       "aug=none", "trainer.epochs=2", "trainer.batch_size=27", "trainer.progress=false", "trainer.log_every_n_steps=2",
       "logger=[csv,wandb]"]
BLOCK, CHUNK_HEADER, FILE_HEADER = 32768, 7, 7  # wandb's .wandb file: ':W&B', magic, version; then the log
FULL, LAST = 1, 4


def records(path: Path) -> list:
    """The protobuf Records of a .wandb file, in the order written."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    found, position, pieces = [], FILE_HEADER, b""
    while position + CHUNK_HEADER <= len(data):
        left_in_block = BLOCK - position % BLOCK
        _, length, kind = struct.unpack("<IHB", data[position:position + CHUNK_HEADER])
        if left_in_block < CHUNK_HEADER or (length == 0 and kind == 0):  # the block's padding
            position += left_in_block
            continue
        pieces += data[position + CHUNK_HEADER:position + CHUNK_HEADER + length]
        position += CHUNK_HEADER + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            found.append(record)
            pieces = b""
    return found


def key_of(item) -> str:
    return item.key or "/".join(item.nested_key)


def wandb_run(run_dir: Path) -> dict:
    """What the offline W&B run of a cvrun run holds: its run record, config, history rows and final summary."""
    kept = {"config": {}, "history": [], "summary": {}}
    for record in records(single(run_dir.glob("wandb/offline-run-*/run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            kept["run"] = record.run
            kept["config"].update({key_of(i): json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            kept["config"].update({key_of(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            kept["history"].append({key_of(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            kept["summary"].update({key_of(i): json.loads(i.value_json) for i in record.summary.update})
    kept["config"].pop("_wandb", None)
    return kept


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A sweep of two jobs, logged to W&B offline; WANDB_MODE=offline and wandb's own folders in tmp."""
    folder = tmp_path_factory.mktemp("wandb")
    settings = {"WANDB_MODE": "offline", "WANDB_CONFIG_DIR": str(folder / "config"),
                "WANDB_CACHE_DIR": str(folder / "cache"), "WANDB_DATA_DIR": str(folder / "data")}
    previous = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        result = cli("train", "-m", *RUN, "trainer.seed=0,1", f"hydra.sweep.dir={folder / 'sweep'}", cwd=folder)
    finally:
        for key, value in previous.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    assert result.returncode == 0, result.stderr
    return folder / "sweep"


def jobs(sweep: Path) -> list[Path]:
    return sorted(p.parent for p in sweep.glob("*/summary.json"))


def test_metrics_config_and_summary_are_the_run_folders(sweep):
    run_dir = jobs(sweep)[0]
    logged, summary = wandb_run(run_dir), summary_of(run_dir)
    rows = metrics_rows(run_dir)
    epochs = [{key: value for key, value in row.items() if not key.startswith("_")}
              for row in logged["history"] if "epoch" in row]
    assert [row.keys() for row in epochs] == [row.keys() for row in rows]
    for logged_row, row in zip(epochs, rows):
        assert logged_row == pytest.approx(row, abs=1e-4)
    steps = [row for row in logged["history"] if "optimizer_step" in row]
    assert [row["optimizer_step"] for row in steps][:2] == [2, 4] and {"step/lr", "step/train_loss"} <= steps[0].keys()
    assert logged["config"] == OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))
    assert summary["status"] == "completed" and logged["summary"]["status"] == "completed"
    for key in ("test_acc1", "test_acc5", "best_val_acc1", "epochs_run"):
        assert logged["summary"][key] == summary[key], key
    assert logged["run"].run_id == summary["wandb_run_id"] and logged["run"].display_name == run_dir.name
    assert logged["run"].project == "cvrun"


def test_a_sweeps_jobs_are_one_group_named_after_its_folder(sweep):
    runs = [wandb_run(job)["run"] for job in jobs(sweep)]
    assert len(runs) == 2 and {run.run_group for run in runs} == {sweep.name}
    assert len({run.run_id for run in runs}) == 2


def hang(*args, **kwargs):
    time.sleep(30)


def fail(*args, **kwargs):
    raise RuntimeError("no space left for the W&B run")


@pytest.mark.parametrize("target, replacement, timeout, warning", [
    ("init", hang, 1, "WandbLogger failed (TimeoutError: on_run_start took more than 1 s)"),
    ("Run.log", fail, 10, "WandbLogger failed (RuntimeError: no space left for the W&B run)"),
])
def test_a_wandb_failure_warns_once_and_the_run_goes_on(tmp_path, monkeypatch, target, replacement, timeout, warning):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    owner, name = (wandb.Run, "log") if target == "Run.log" else (wandb, "init")
    monkeypatch.setattr(owner, name, replacement)
    started = time.perf_counter()
    result = cli("train", *RUN, "trainer.epochs=1", f"logger.wandb.timeout={timeout}",
                 f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert summary_of(tmp_path / "run")["status"] == "completed"
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.count("WARNING") == 1 and f"{warning}; the run goes on without it" in log
    assert time.perf_counter() - started < 30  # the hung init is left behind

