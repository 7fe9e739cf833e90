"""The run folder: config.yaml, metrics.csv, summary.json, checkpoints/, curves.png.

Every file is written to a temporary name and renamed into place, so a kill
at any moment leaves the previous good version.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

METRIC_COLUMNS = ["epoch", "lr", "train_loss", "train_acc1", "val_loss", "val_acc1", "val_acc5",
                  "epoch_seconds", "train_images_per_second"]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Folders claimed in this launch: Hydra reads its run and sweep dir more than once.
_claimed: dict[str, Path] = {}


def claim_folder(path: str) -> Path:
    """A new folder for one run: `path`, or `path_2`, `path_3`, ... when another run already has it.

    Hydra's timestamped names collide for runs launched in the same second. os.mkdir
    either creates a folder or fails, so two processes never claim the same one.
    """
    if path not in _claimed:
        base = Path(path)
        base.parent.mkdir(parents=True, exist_ok=True)
        for number in itertools.count(1):
            candidate = base if number == 1 else base.with_name(f"{base.name}_{number}")
            try:
                candidate.mkdir()
                break
            except FileExistsError:
                continue
        _claimed[path] = candidate
    return _claimed[path]


def forget_claims() -> None:
    """A new launch (one run or one sweep) claims new folders."""
    _claimed.clear()


def log_formatter() -> logging.Formatter:
    """train.log's line format, as configs/train.yaml has Hydra write it; for logs cvrun opens itself."""
    return logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s", "%H:%M:%S")


def versions() -> dict[str, str]:
    import torch
    import torchvision

    import cvrun

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "cvrun": cvrun.__version__}


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
            self.path.mkdir(parents=True, exist_ok=True)

    def write_bytes(self, path: Path, data: bytes) -> None:
        if self.writes:
            atomic_write_bytes(path, data)

    def save_checkpoint(self, name: str, state: dict[str, Any]) -> None:
        """checkpoints/<name>, written atomically (by rank 0 alone under torchrun)."""
        from cvrun.engine.checkpoint import save_checkpoint  # it imports this module's atomic write

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
