"""The run folder: config.yaml, metrics.csv, summary.json, checkpoints/, curves.png.

Every file is written to a temporary name and renamed into place, so a kill
at any moment leaves the previous good version.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import platform
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from cvrun.io import atomic_write_bytes, storage_fault

METRIC_COLUMNS = ["epoch", "lr", "train_loss", "train_acc1", "val_loss", "val_acc1", "val_acc5",
                  "epoch_seconds", "train_images_per_second"]


def log_formatter() -> logging.Formatter:
    """train.log's line format, as configs/train.yaml has Hydra write it; for logs cvrun opens itself."""
    return logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s", "%H:%M:%S")


@contextmanager
def logging_to(path: Path, console: bool = False) -> Iterator[None]:
    """cvrun's log lines also go to `path` (and to stdout with `console`), until the block ends."""
    log = logging.getLogger("cvrun")
    handlers: list[logging.Handler] = [logging.FileHandler(path)]
    if console:
        handlers.append(logging.StreamHandler(sys.stdout))
        log.setLevel(logging.INFO)
    for handler in handlers:
        handler.setFormatter(log_formatter())
        log.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            log.removeHandler(handler)
            handler.close()


def use_cvrun_log_format() -> None:
    """Every handler of the root logger (Hydra's console and train.log) writes log_formatter()'s lines,
    also when Hydra runs a config without cvrun's logging settings (the rerun of a saved config.yaml);
    other libraries' notes stay out of them."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(log_formatter())
    quiet_third_party_logs()


def quiet_third_party_logs() -> None:
    """Keep other libraries' notes off the console and train.log: MLflow's database INFO lines (MLflow reads
    its level from this variable when it is imported; a user's own setting wins) and matplotlib's font-cache
    note ("generated new fontManager")."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)


def resume_hint(path: Path) -> str:
    """How to carry a stopped run on, as an argument that can be pasted into a shell as it is."""
    return f"carry on with {shlex.quote(f'trainer.resume={path}')}"


def versions() -> dict[str, str]:
    from importlib.metadata import version  # not `import torchvision`: its import costs 1.4 s

    import torch

    import cvrun

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": version("torchvision"), "cvrun": cvrun.__version__}


def round_metrics(values: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()}


class RunFolder:
    """Writes the files of one run into `path`.

    writes=False: a torchrun process other than rank 0, which shares the folder and writes nothing.
    """

    def __init__(self, path: Path, writes: bool = True):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.writes = writes
        if writes:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise storage_fault(self.path, err) from None

    def write_bytes(self, path: Path, data: bytes) -> None:
        if self.writes:
            atomic_write_bytes(path, data)

    def save_checkpoint(self, name: str, state: dict[str, Any]) -> None:
        """checkpoints/<name>, written atomically (by rank 0 alone under torchrun)."""
        from cvrun.io import save_checkpoint  # imports torch: only when a checkpoint is written

        if self.writes:
            save_checkpoint(self.checkpoints / name, state)

    def remove_partial_writes(self) -> None:
        """Delete the temporary files of writes a kill -9 cut short (their targets kept the previous version)."""
        if not self.writes:
            return
        for folder in (self.path, self.checkpoints):
            for partial in folder.glob(".*.tmp"):
                partial.unlink(missing_ok=True)

    def write_config(self, yaml_text: str) -> None:
        self.write_bytes(self.path / "config.yaml", yaml_text.encode())

    def write_summary(self, summary: dict[str, Any]) -> None:
        self.write_bytes(self.path / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())

    def read_summary(self) -> dict[str, Any]:
        path = self.path / "summary.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def update_summary(self, **values: Any) -> dict[str, Any]:
        summary = {**self.read_summary(), **values}
        self.write_summary(summary)
        return summary

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        columns = METRIC_COLUMNS + [k for row in rows for k in row if k not in METRIC_COLUMNS]
        columns = list(dict.fromkeys(columns))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(round_metrics(row))
        self.write_bytes(self.path / "metrics.csv", buffer.getvalue().encode())
