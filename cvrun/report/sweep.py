"""The sweep summary: summary.csv and summary.png at the root of a multirun, kept by a Hydra callback.

configs/train.yaml registers SweepSummary under hydra.callbacks. After every
job, on_job_end appends the job's number, overrides, folder and status to
`<sweep>/jobs.jsonl` (one line, appended: safe with parallel launchers too)
and rewrites summary.csv from it and the jobs' summary.json files. When the
sweep ends, on_multirun_end writes the final summary.csv, summary.png, and
best.json (the job with the best validation score of trainer.monitor). A sweep over dataset.labeled_per_class gets a
label-efficiency curve as its summary.png.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from hydra.experimental.callback import Callback

from cvrun.config import MONITOR_NAMES, MONITORS
from cvrun.io import StorageError, atomic_write_bytes, storage_fault
from cvrun.report.curves import LABELS_KEY, label_points, plot_label_efficiency
from cvrun.report.figures import pyplot, save_png
from cvrun.report.table import read_overrides, result_columns, run_row, split_override, to_csv

JOBS_FILE = "jobs.jsonl"


def append_job(sweep_dir: Path, record: dict[str, Any]) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record) + "\n").encode()
    try:
        fd = os.open(sweep_dir / JOBS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            os.write(fd, line)  # one write of one line: O_APPEND keeps concurrent jobs' lines whole
        finally:
            os.close(fd)
    except OSError as err:
        raise storage_fault(sweep_dir / JOBS_FILE, err) from None


def swept_keys(sweep_dir: Path, first_job: Path | None) -> list[str]:
    """The keys swept with several values: on the command line (`a=1,2`, `range(...)`) or in the sweeper's
    params (an hparams_search config). Read from multirun.yaml, or from the first job's .hydra/hydra.yaml
    where the sweeper writes no multirun.yaml (Optuna)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    path = sweep_dir / "multirun.yaml"
    if not path.is_file() and first_job is not None:
        path = first_job / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return []
    hydra_cfg = OmegaConf.load(path).hydra
    parsed = OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task))
    keys = [o.key_or_group for o in parsed if o.is_sweep_override()]
    return list(dict.fromkeys(keys + list(hydra_cfg.sweeper.get("params") or {})))


def sweep_rows(sweep_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of the jobs recorded so far (the latest record per job number) and the swept keys."""
    path = sweep_dir / JOBS_FILE
    records = {}
    for line in (path.read_text().splitlines() if path.exists() else []):
        record = json.loads(line)
        records[record["num"]] = record
    records = {**unrecorded_jobs(sweep_dir), **records}
    rows = [{"job": num, **run_row(Path(records[num]["run_dir"]), records[num]["overrides"], records[num]["status"])}
            for num in sorted(records)]
    first_job = Path(records[min(records)]["run_dir"]) if records else None
    keys = swept_keys(sweep_dir, first_job) or [split_override(o)[0] for r in records.values() for o in r["overrides"]]
    return rows, list(dict.fromkeys(keys))


def unrecorded_jobs(sweep_dir: Path) -> dict[int, dict[str, Any]]:
    """Job folders (`<num>_...` with a summary.json) that jobs.jsonl lacks: a sweep stopped by Ctrl-C ends
    without the job-end callback, and its interrupted job is still one of its rows."""
    found = {}
    for folder in sorted(sweep_dir.glob("[0-9]*_*")):
        number = folder.name.split("_", 1)[0]
        if number.isdigit() and (folder / "summary.json").is_file():
            found[int(number)] = {"num": int(number), "overrides": read_overrides(folder), "run_dir": str(folder),
                                  "status": "unknown"}
    return found


def write_summary_csv(sweep_dir: Path) -> list[dict[str, Any]]:
    rows, keys = sweep_rows(sweep_dir)
    columns = ["job", *keys, *result_columns(rows), "run_dir"]
    atomic_write_bytes(sweep_dir / "summary.csv", to_csv(rows, columns).encode())
    return rows


# More values of the last swept key than this (a search's draws, not a grid's few): one bar per job in order.
MAX_COLOURS = 8


def plot_sweep(rows: list[dict[str, Any]], keys: list[str], path: Path) -> None:
    """Test accuracy per job: bars grouped by the last swept key's values, one group per other combination;
    for a search (many distinct values), one bar per job in order instead."""
    from matplotlib.patches import Patch

    if LABELS_KEY in keys and plot_label_sweep(rows, keys, path):
        return
    plt = pyplot()
    inner_key = keys[-1] if keys else None
    if len({str(row.get(inner_key)) for row in rows}) > MAX_COLOURS:
        plot_jobs_in_order(rows, keys, path)
        return

    def group_of(row: dict[str, Any]) -> str:
        return ", ".join(f"{k}={row.get(k)}" for k in keys[:-1]) or "all"

    def inner_of(row: dict[str, Any]) -> str:
        return str(row.get(inner_key)) if inner_key else "run"

    inner_values = list(dict.fromkeys(map(inner_of, rows)))
    groups = list(dict.fromkeys(map(group_of, rows)))
    width = 0.8 / len(inner_values)
    figure, axis = plt.subplots(figsize=(max(6, 1.2 * len(rows) + 2), 4.5))
    for row in rows:
        i = inner_values.index(inner_of(row))
        x = groups.index(group_of(row)) + (i - (len(inner_values) - 1) / 2) * width
        accuracy = row.get("test_acc1")
        if row["status"] == "completed" and accuracy is not None:
            axis.bar(x, accuracy, width, color=f"C{i}")
            axis.text(x, accuracy, f"{accuracy:.1f}", ha="center", va="bottom", fontsize=8)
        else:
            axis.text(x, 1, row["status"], ha="center", va="bottom", rotation=90, color="red")
    axis.legend(handles=[Patch(color=f"C{i}", label=f"{inner_key}={value}" if inner_key else value)
                         for i, value in enumerate(inner_values)], fontsize=8)
    axis.set_xticks(range(len(groups)), groups, rotation=20, ha="right", fontsize=8)
    axis.set_ylabel("test top-1 accuracy (%)")
    axis.set_ylim(0, 100)
    axis.grid(axis="y", alpha=0.3)
    save_png(figure, path, bbox_inches="tight")


def plot_label_sweep(rows: list[dict[str, Any]], keys: list[str], path: Path) -> bool:
    """A sweep over dataset.labeled_per_class: test top-1 against labels per class, one line per combination of
    the other swept keys, its seeds' mean and interval (False, nothing drawn, when no job has both)."""
    from cvrun.report.compare import SEED_KEYS

    others = [k for k in keys if k != LABELS_KEY and k not in SEED_KEYS]
    points = label_points([(row, row.get("test_acc1")) for row in rows if row["status"] == "completed"], others)
    if points:
        plot_label_efficiency(points, "test top-1 accuracy (%)", path)
    return bool(points)


def plot_jobs_in_order(rows: list[dict[str, Any]], keys: list[str], path: Path) -> None:
    """One bar per job, in job (trial) order: test top-1 where completed, else its status; every job's best
    validation top-1 (what a search maximises, pruned trials' too) as a point, and the best so far as a line."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(max(6, 0.45 * len(rows) + 2), 4.5))
    best_so_far, best = [], None
    for x, row in enumerate(rows):
        accuracy, value = row.get("test_acc1"), row.get("best_val_acc1")
        if row["status"] == "completed" and accuracy is not None:
            axis.bar(x, accuracy, 0.7, color="C0")
            axis.text(x, accuracy, f"{accuracy:.1f}", ha="center", va="bottom", fontsize=7)
        else:
            axis.text(x, 1, row["status"], ha="center", va="bottom", rotation=90, color="red", fontsize=8)
        if value is not None:
            axis.plot(x, value, "o", color="C1" if row["status"] == "completed" else "0.6")
            if row["status"] == "completed":
                best = value if best is None else max(best, value)
        best_so_far.append(best)
    axis.step(range(len(rows)), [b if b is not None else float("nan") for b in best_so_far], where="mid", color="C1",
              label="best validation top-1 so far")
    axis.plot([], [], "o", color="C1", label="validation top-1 (grey: not completed)")
    axis.bar([], [], color="C0", label="test top-1")
    labels = [f"{row['job']}: " + " ".join(f"{k.rsplit('.', 1)[-1]}={short_number(row.get(k))}" for k in keys)
              for row in rows]
    axis.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
    axis.set_ylabel("top-1 accuracy (%)")
    axis.set_ylim(0, 100)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8, loc="upper left")
    save_png(figure, path, bbox_inches="tight")


def short_number(value: Any) -> str:
    """0.030285251536 -> 0.0303: a search's draws, readable on an axis."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(value) if number.is_integer() and "." not in str(value) else f"{number:.3g}"


def typed_value(key: str, value: Any) -> Any:
    """A swept value as Hydra reads it (0.05 a number, resnet20 a string), so best.json holds it typed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_override(f"{key}={value}").value()
    except HydraException:
        return value


def sweep_monitor(rows: list[dict[str, Any]]) -> str:
    """What the sweep's best job is chosen by: the jobs' trainer.monitor, or the validation top-1 where the jobs
    watched different ones (their values could not be compared)."""
    monitors = {r.get("monitor") or "val_acc1" for r in rows if r["status"] == "completed"}
    return monitors.pop() if len(monitors) == 1 else "val_acc1"


def pick_best(rows: list[dict[str, Any]], keys: list[str]) -> dict[str, Any] | None:
    """The completed job with the best validation score of the jobs' trainer.monitor (never chosen on the test
    split)."""
    monitor = sweep_monitor(rows)
    column = f"best_{monitor}"
    scored = [r for r in rows if r["status"] == "completed" and r.get(column) is not None]
    if not scored:
        return None
    sign = -1 if MONITORS[monitor] == "minimize" else 1
    best = max(scored, key=lambda r: sign * r[column])
    shown = dict.fromkeys(("best_val_acc1", column, "test_acc1", "test_acc5"))
    return {"job": best["job"], "overrides": {k: typed_value(k, best.get(k)) for k in keys}, "monitor": monitor,
            **{k: best.get(k) for k in shown}, "run_dir": best["run_dir"]}


def unfinished_jobs(rows: list[dict[str, Any]], keys: list[str]) -> int:
    """Jobs that did not end as the sweep meant: what makes its exit status 1. A pruned trial ended as its
    search meant, and an interrupted one that a later job ran again (a resumed search) has its result there."""
    def setting(row: dict[str, Any]) -> tuple:
        return tuple(str(row.get(k)) for k in keys)

    unfinished = 0
    for i, row in enumerate(rows):
        rerun = row["status"] == "interrupted" and any(setting(later) == setting(row) for later in rows[i + 1:])
        unfinished += row["status"] not in ("completed", "pruned") and not rerun
    return unfinished


class SweepSummary(Callback):
    """Keeps summary.csv current during a multirun; adds summary.png and best.json when it ends.

    `failed_jobs` counts the last sweep's jobs that did not complete, read in the
    main process: with submitit or joblib the jobs run elsewhere, so this is how
    `cvrun train -m` learns that one failed. `unwritten` is set when a sweep file
    could not be written (a full disk): one line says which, and the sweep exits 1.
    """

    failed_jobs = 0
    unwritten = False

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        """Refuse search settings no sweeper would read; with logger.mlflow, start the sweep's parent MLflow run,
        which each job's run names as its parent."""
        refuse_search_settings_without_a_search(config)
        options = (config.get("logger") or {}).get("mlflow")
        if options is not None:
            from cvrun.loggers.mlflow import start_parent_run

            with tracker_warnings("the sweep's MLflow run"):
                start_parent_run(options, Path(config.hydra.sweep.dir))

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from cvrun.parallel import is_main

        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode != RunMode.MULTIRUN or not is_main():  # a multi-task job: every task ends it
            return
        # A job's own summary.json, when it wrote one, has the last word on its status.
        failed = job_return.status.name == "FAILED"
        with reported_write_errors():
            append_job(Path(hydra_cfg.sweep.dir), {
                "num": hydra_cfg.job.num, "overrides": list(job_return.overrides or []),
                "run_dir": str(Path(hydra_cfg.runtime.output_dir).absolute()),
                "status": "failed" if failed else "completed"})
            write_summary_csv(Path(hydra_cfg.sweep.dir))

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows, keys = sweep_rows(sweep_dir)
        if not rows:
            return
        SweepSummary.failed_jobs = unfinished_jobs(rows, keys)
        with reported_write_errors():
            write_summary_csv(sweep_dir)
            plot_sweep(rows, keys, sweep_dir / "summary.png")
            best = pick_best(rows, keys)
            if best is not None:
                atomic_write_bytes(sweep_dir / "best.json", (json.dumps(best, indent=2) + "\n").encode())
                chosen = " ".join(f"{k}={v}" for k, v in best["overrides"].items())
                monitor = best["monitor"]
                print(f"best of {len(rows)} jobs by the {MONITOR_NAMES[monitor]}: {chosen} "
                      f"({monitor} {best[f'best_{monitor}']}, test top-1 {best['test_acc1']}%); "
                      f"see {sweep_dir / 'best.json'}")
        options = (config.get("logger") or {}).get("mlflow")
        if options is not None:
            from cvrun.loggers.mlflow import end_parent_run

            with tracker_warnings("the sweep's MLflow run"):
                end_parent_run(options, sweep_dir, failed=SweepSummary.failed_jobs > 0)


def refuse_search_settings_without_a_search(config: Any) -> None:
    """hparams_search.pruner (or another of an Optuna search's settings) on a grid sweep would change nothing:
    one line and exit 2 before any job. (A SystemExit: Hydra turns a callback's exceptions into warnings.)"""
    from dataclasses import asdict

    from cvrun.config import OptunaSweeperConfig, SearchConfig

    if config.hydra.sweeper.get("_target_") == OptunaSweeperConfig._target_:
        return
    given = config.get("hparams_search") or {}
    changed = [f"hparams_search.{key}" for key, default in asdict(SearchConfig()).items() if given.get(key) != default]
    if changed:
        sweeper = str(config.hydra.sweeper.get("_target_")).rsplit(".", 1)[-1]
        print(f"cvrun: error: {', '.join(changed)} {'is a setting' if len(changed) == 1 else 'are settings'} of an "
              f"Optuna search, but this sweep runs on {sweeper}; add hydra/sweeper=optuna (an Optuna preset such as "
              "hparams_search=randaug_optuna does) or drop it", file=sys.stderr)
        raise SystemExit(2)


@contextmanager
def tracker_warnings(what: str) -> Iterator[None]:
    """A tracker that fails warns in one line; it never costs the sweep its results."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - a tracker's failure of any kind
        print(f"cvrun: warning: {what} failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
              "the sweep goes on without it", file=sys.stderr)


@contextmanager
def reported_write_errors() -> Iterator[None]:
    """A sweep file that cannot be written is one line on stderr (Hydra would print a warning with a
    traceback's worth of text), and the sweep's exit status says so."""
    try:
        yield
    except StorageError as err:
        print(f"cvrun: error: {err}", file=sys.stderr)
        SweepSummary.unwritten = True
