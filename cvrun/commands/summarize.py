"""`cvrun summarize DIR [--sort KEY] [--format table|csv|md] [--mean-over-seeds] [--html]`: every run under DIR.

One table; with --html also DIR/summary.html, the table and the learning curves of every run overlaid.

A run is a folder with a summary.json (running, failed and interrupted runs
included). The columns are the config keys whose values differ between the
runs, then the results. `--mean-over-seeds` merges runs that differ only in
trainer.seed into one row: the mean and standard deviation of each result
over the completed ones. This command does not use Hydra; it only reads, but for --html's summary.html
and summary_curves/.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

from cvrun.commands import OneLineParser, run_parsed
from cvrun.config import flatten
from cvrun.errors import UserError


def find_runs(root: Path) -> list[Path]:
    return sorted({p.parent for p in root.rglob("summary.json")})


def run_settings(run: Path) -> tuple[dict[str, Any], str | None]:
    """A run's resolved config (config.yaml, else its overrides) as flat strings, and what is wrong with it."""
    from omegaconf import OmegaConf

    from cvrun.report.table import read_overrides, split_override

    config = run / "config.yaml"
    try:
        if config.is_file():
            return {k: str(v) for k, v in flatten(OmegaConf.to_container(OmegaConf.load(config))).items()}, None
        return dict(split_override(o) for o in read_overrides(run)), None
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        return {}, f"{config.name if config.is_file() else 'overrides.yaml'} is unreadable " \
                   f"({str(err).splitlines()[0] if str(err) else type(err).__name__})"


def differing_settings(settings: list[dict[str, Any]]) -> list[str]:
    """The config keys whose values differ between runs (runs without settings left out)."""
    known = [s for s in settings if s]
    keys = list(dict.fromkeys(k for s in known for k in s))
    return [k for k in keys if len({s.get(k) for s in known}) > 1]


def sort_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Numbers best-first (descending), text ascending; rows without the key last."""
    present = [r for r in rows if r.get(key) not in (None, "")]
    missing = [r for r in rows if r.get(key) in (None, "")]
    numeric = all(isinstance(r[key], (int, float)) for r in present)
    return sorted(present, key=lambda r: r[key] if numeric else str(r[key]), reverse=numeric) + missing


SEED_KEY = "trainer.seed"
AVERAGED = ["best_val_acc1", "test_acc1", "test_acc5", "wall_seconds"]  # and every regime's result columns


def numeric_order(text: str) -> tuple[int, str]:
    return len(text), text  # non-negative integers written in full: 2 before 10


def mean_over_seeds(rows: list[dict[str, Any]], keys: list[str],
                    results: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per setting (the differing keys but the seed): mean and sd of each result over completed runs."""
    from cvrun.report.table import regime_columns

    setting_keys = [k for k in keys if k != SEED_KEY]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in setting_keys), []).append(row)
    averaged = [c for c in [*AVERAGED, *regime_columns(rows)] if c in results]
    merged = []
    for setting, runs in groups.items():
        completed = [r for r in runs if r["status"] == "completed"]
        row = {**dict(zip(setting_keys, setting)), "runs": len(runs), "completed": len(completed),
               "seeds": " ".join(sorted((str(r.get(SEED_KEY, "")) for r in completed), key=numeric_order))}
        for column in averaged:
            values = [r[column] for r in completed if isinstance(r.get(column), (int, float))]
            row[column] = round(statistics.mean(values), 2) if values else None
            row[f"{column}_sd"] = round(statistics.stdev(values), 2) if len(values) > 1 else None
        merged.append(row)
    return merged, [*setting_keys, "runs", "completed", "seeds", *(f"{c}{s}" for c in averaged for s in ("", "_sd"))]


def curve_groups(runs: list[Path], settings: list[dict[str, Any]], keys: list[str],
                 seed_means: bool) -> dict[str, list[list[dict]]]:
    """Each run's metrics.csv rows under its label: the differing keys' values that change results (no logger,
    progress bar, worker count or cache path; without the seed when its runs are averaged), or its folder name
    where nothing such differs. Runs (or settings) that only the left-out keys tell apart keep a line each,
    named apart by their folder."""
    from cvrun.report.sweep_page import metric_rows
    from cvrun.report.table import changes_no_result

    grouped = [k for k in keys if not (seed_means and k == SEED_KEY)]
    shown = [k for k in grouped if not changes_no_result(k)]
    members: dict[tuple, list[tuple[Path, dict[str, Any]]]] = {}
    for run, setting in zip(runs, settings):
        members.setdefault(tuple(setting.get(k) for k in grouped) if seed_means else (run,), []).append((run, setting))
    labels = [" ".join(f"{k}={first[1].get(k)}" for k in shown) or first[0].name
              for first, *_ in members.values()]
    return {(label if labels.count(label) == 1 else f"{label} ({group[0][0].name})"):
            [metric_rows(run) for run, _ in group] for label, group in zip(labels, members.values())}


def summarize(directory: Path, sort: str | None, output_format: str, seed_means: bool = False,
              html: bool = False) -> str:
    from cvrun.report.table import FORMATS, result_columns, run_row

    if not directory.is_dir():
        raise UserError(f"{directory} is not a folder; give a run, a sweep or an outputs/ folder")
    runs = find_runs(directory)
    if not runs:
        raise UserError(f"no runs under {directory} (a run folder holds a summary.json)")
    settings, problems = zip(*(run_settings(run) for run in runs))
    keys = differing_settings(list(settings))
    rows = []
    for run, setting, problem in zip(runs, settings, problems):
        row = run_row(run, [])
        if problem is not None:
            row.update(status="unreadable", reason=problem)
        if row["status"] == "unreadable":
            print(f"cvrun: warning: {run}: {row['reason']}; its row is marked unreadable", file=sys.stderr)
        row.update({k: setting.get(k) for k in keys})
        row["run_dir"] = str(run.relative_to(directory)) if run != directory else "."
        rows.append(row)
    columns = [*keys, *result_columns(rows), "run_dir"]
    if seed_means:
        rows, columns = mean_over_seeds(rows, keys, columns)
    if sort is not None:
        if sort not in columns:
            raise UserError(f"cannot sort by '{sort}'; columns: {', '.join(columns)}")
        rows = sort_rows(rows, sort)
    text = FORMATS[output_format](rows, columns)
    if html:
        from cvrun.report.sweep_page import write_sweep_page

        groups = curve_groups(runs, list(settings), keys, seed_means)
        page = write_sweep_page(directory, [{c: row.get(c) for c in columns} for row in rows], groups, seed_means)
        text += f"{page}\n"
    return text


def run_app() -> int:
    parser = OneLineParser(prog="cvrun summarize", description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="a run, a sweep, or a whole outputs/ tree")
    parser.add_argument("--sort", help="column to sort by (numbers best first)")
    parser.add_argument("--format", dest="output_format", choices=["table", "csv", "md"], default="table")
    parser.add_argument("--mean-over-seeds", action="store_true",
                        help="one row per setting: mean and sd of each result over its trainer.seed values")
    parser.add_argument("--html", action="store_true",
                        help="also write DIR/summary.html: the table and every run's learning curves overlaid")

    def show(args) -> int:
        print(summarize(args.dir, args.sort, args.output_format, args.mean_over_seeds, args.html), end="")
        return 0
    return run_parsed(parser, show)
