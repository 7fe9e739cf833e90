"""Tables of runs: one row per run folder, for sweeps' summary.csv and `cvrun summarize`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

RESULT_COLUMNS = ["status", "reason", "best_val_acc1", "test_acc1", "test_acc5", "epochs_run", "wall_seconds"]
# What a run watched (trainer.monitor), its best class-balanced validation scores and the test split's: every row
# carries them (and best_val_loss, which a sweep's best job may be chosen by), and the tables show them where a
# run watched another monitor than val_acc1.
BALANCED_COLUMNS = ["monitor", "best_val_balanced_acc1", "best_val_macro_f1", "test_balanced_acc1", "test_macro_f1"]

# Settings that change how a run is watched, or where its files and caches are, never what it computes: sweep
# folder names and summarize's legends leave them out (the tables keep them). logger.* as well.
NO_RESULT_KEYS = ("logger", "trainer.progress", "trainer.num_workers", "trainer.log_every_n_steps", "trainer.resume",
                  "hparams_search.resume", "dataset.download", "dataset.cache", "dataset.cache_dir")


def changes_no_result(key: str) -> bool:
    key = key.lstrip("+~")
    return key in NO_RESULT_KEYS or key.startswith("logger.")


def regime_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The results the runs' regimes add (each run's summary.json lists its regime's, `result_columns`)."""
    return list(dict.fromkeys(column for row in rows for column in row.get("result_columns") or []))


def result_columns(rows: list[dict[str, Any]]) -> list[str]:
    watched_other = any(row.get("monitor") not in (None, "val_acc1") for row in rows)
    return RESULT_COLUMNS + (BALANCED_COLUMNS if watched_other else []) + regime_columns(rows)


def read_json(path: Path) -> dict[str, Any]:
    return read_json_checked(path)[0]


def read_json_checked(path: Path) -> tuple[dict[str, Any], str | None]:
    """The JSON object in `path` ({} when absent), and what is wrong with the file when it cannot be read."""
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError) as err:
        return {}, f"{path.name} is unreadable ({str(err).splitlines()[0]})"
    return (value, None) if isinstance(value, dict) else ({}, f"{path.name} holds no JSON object")


def read_overrides(run_dir: Path) -> list[str]:
    """The overrides the run was started with (Hydra's .hydra/overrides.yaml), [] when absent."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    return [str(o) for o in OmegaConf.load(path)]


def split_override(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def run_row(run_dir: Path, overrides: list[str], status: str | None = None) -> dict[str, Any]:
    """One run's row: its overrides as columns, then its results from summary.json."""
    summary, problem = read_json_checked(run_dir / "summary.json")
    row: dict[str, Any] = dict(split_override(o) for o in overrides)
    row["result_columns"] = summary.get("result_columns") or []
    row.update({column: summary.get(column)
                for column in RESULT_COLUMNS + BALANCED_COLUMNS + ["best_val_loss"] + row["result_columns"]})
    if problem is not None:
        row.update(status="unreadable", reason=problem)
    if row["status"] is None:
        row["status"] = status or "unknown"
    row["run_dir"] = str(run_dir)
    return row


def to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    return buffer.getvalue()


def _cells(rows: list[dict[str, Any]], columns: list[str]) -> list[list[str]]:
    return [["" if row.get(c) is None else str(row.get(c)) for c in columns] for row in rows]


REASON_WIDTH = 60  # failure reasons are cut to this in the plain-text table (csv and md keep them whole)


def to_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """An aligned plain-text table."""
    cells = [[v[:REASON_WIDTH - 3] + "..." if c == "reason" and len(v) > REASON_WIDTH else v
              for c, v in zip(columns, r)] for r in _cells(rows, columns)]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines) + "\n"


def to_markdown(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(v.replace("|", "\\|") for v in r) + " |" for r in _cells(rows, columns)]
    return "\n".join(lines) + "\n"


FORMATS = {"table": to_text, "csv": to_csv, "md": to_markdown}
