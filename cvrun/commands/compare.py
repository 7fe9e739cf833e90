"""`cvrun compare DIR...`: settings compared over their seeds (means, 95% intervals, paired tests, verdicts).

`cvrun compare DIR... [--by KEY] [--baseline VALUE] [--per KEY] [--metric test_acc1] [--format table|csv|md|latex]
[--html]`.

Reads every run under the folders (as summarize does), groups the completed ones into settings (the keys
that differ between runs, seeds left out; `--by` picks one key), pairs runs across settings by trainer.seed
and dataset.split_seed, and prints per setting n, mean, sd and a 95% interval, and against the baseline the
paired mean difference with its interval, the p-value (Holm-adjusted when several settings face the baseline)
and a verdict; settings that share no seeds are compared with Welch's test. Published figures that presets
carry (`published:`) are set beside the measured ones. --html also writes compare.html into the first DIR,
with a label-efficiency curve when dataset.labeled_per_class is among the settings. `--per KEY` compares
within each value of KEY apart, one table each (`--per dataset.labeled_per_class`: the methods at each point of
a label-efficiency curve). This command does not use Hydra.
"""

from __future__ import annotations

from pathlib import Path

from cvrun.commands import OneLineParser, run_parsed
from cvrun.errors import UserError


def read_runs(directories: list[Path]) -> tuple[list, list[str]]:
    """Every run under the folders (cvrun.report.compare.Run) and the config keys that differ between them."""
    from cvrun.commands.summarize import differing_settings, find_runs, run_settings
    from cvrun.report.compare import Run
    from cvrun.report.table import read_json

    runs, seen = [], set()
    for directory in directories:
        if not directory.is_dir():
            raise UserError(f"{directory} is not a folder; give sweeps, runs or an outputs/ folder")
        found = find_runs(directory)
        if not found:
            raise UserError(f"no runs under {directory} (a run folder holds a summary.json)")
        found = [run for run in found if run.resolve() not in seen]  # folders given twice, or one inside another
        seen.update(run.resolve() for run in found)
        for run in found:
            runs.append(Run(str(run), run_settings(run)[0], read_json(run / "summary.json")))
    return runs, differing_settings([run.settings for run in runs])


def by_key(key: str, runs: list, flag: str = "--by") -> str:
    """--by (--per) as given, or a group's name standing for its option (`aug` for aug.name)."""
    keys = list(dict.fromkeys(k for run in runs for k in run.settings))
    if key in keys:
        return key
    if f"{key}.name" in keys:
        return f"{key}.name"
    from cvrun.overrides import suggest_key

    close = suggest_key(key, keys)
    raise UserError(f"{flag} {key}: no run has this config key" + (f"; did you mean '{close}'?" if close else ""))


# How a --per block is headed in each format but csv, which gets a column instead.
BLOCK_HEADINGS = {"table": "== {}\n", "md": "### {}\n\n", "latex": "% {}\n"}


def compare_dirs(directories: list[Path], by: str | None, baseline: str | None, metric: str, output_format: str,
                 resolve: float, html: bool, per: str | None = None) -> str:
    from cvrun.report.compare import FORMATS, compare, ordered, rows
    from cvrun.report.table import to_csv

    runs, differing = read_runs(directories)
    by = by_key(by, runs) if by else None
    if per is not None and html and by is None:
        raise UserError("--html with --per needs --by: the page compares the --by settings over all values of --per")
    # Over all runs: the table without --per; the page (and its label-efficiency curve) with --html.
    comparison = compare(runs, differing, metric, by, baseline, resolve) if per is None or html else None
    if per is None:
        text = FORMATS[output_format](comparison)
    else:
        per = by_key(per, runs, "--per")
        if per == by:
            raise UserError(f"--per and --by both name {per}; --per takes another key, whose values are compared "
                            "apart (e.g. --by regime --per dataset.labeled_per_class)")
        blocks: dict[str, list] = {}
        for run in sorted(runs, key=lambda r: ordered(str(r.settings.get(per)))):
            blocks.setdefault(str(run.settings.get(per)), []).append(run)
        within = [key for key in differing if key != per]
        compared = {value: compare(group, within, metric, by, baseline, resolve) for value, group in blocks.items()}
        if output_format == "csv":  # one table, the value of --per's key its first column
            table = [{per: value, **row} for value, block in compared.items() for row in rows(block)]
            text = to_csv(table, list(dict.fromkeys(k for row in table for k in row)))
        else:
            text = "\n".join(BLOCK_HEADINGS[output_format].format(f"{per}={value}") + FORMATS[output_format](block)
                             for value, block in compared.items())
    if html:
        from cvrun.report.sweep_page import write_compare_page

        text += f"{write_compare_page(directories[0], comparison, runs)}\n"
    return text


def run_app() -> int:
    parser = OneLineParser(prog="cvrun compare", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", type=Path, nargs="+", help="sweeps, runs or outputs/ folders")
    parser.add_argument("--by", help="the config key whose values are the settings (default: every key that "
                                     "differs, seeds left out)")
    parser.add_argument("--baseline", help="the setting the others are compared with (default: the first)")
    parser.add_argument("--per", help="compare within each value of this config key apart, a table each "
                                      "(e.g. dataset.labeled_per_class)")
    parser.add_argument("--metric", default="test_acc1", help="a result in summary.json (default test_acc1)")
    parser.add_argument("--format", dest="output_format", choices=["table", "csv", "md", "latex"], default="table")
    parser.add_argument("--resolve", type=float, default=1.0,
                        help="the difference the 'seeds would resolve' estimate is for (default 1 point)")
    parser.add_argument("--html", action="store_true", help="also write compare.html into the first DIR")

    def show(args) -> int:
        if args.resolve <= 0:
            raise UserError(f"--resolve must be positive (a difference in the metric's units), got {args.resolve:g}")
        print(compare_dirs(args.dirs, args.by, args.baseline, args.metric, args.output_format, args.resolve,
                           args.html, args.per), end="")
        return 0
    return run_parsed(parser, show)
