"""`cvrun summarize DIR --html`: DIR/summary.html, the table and the learning curves of every run overlaid
(validation top-1 and training loss against epoch, one line per run, named by the keys that differ), or with
--mean-over-seeds one line per setting: the mean over its seeds, with their standard deviation as error bars.
`cvrun compare --html`: compare.html, the comparison's tables and, over labels per class, its curve."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Any

from cvrun.report.figures import pyplot, save_png
from cvrun.report.html import html_image, html_table, write_report

CURVES = (("val_acc1", "validation top-1 (%)"), ("train_loss", "training loss"))


def metric_rows(run: Path) -> list[dict[str, float | None]]:
    """A run's metrics.csv as numbers (an empty cell is None); no rows where it has none."""
    path = run / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [{k: float(v) if v not in ("", None) else None for k, v in row.items()} for row in csv.DictReader(handle)]


def curve(runs: list[list[dict[str, float | None]]], metric: str) -> tuple[list[float], list[float], list[float]]:
    """Epochs, the mean of `metric` over the runs at each epoch, and its standard deviation (0 for one run)."""
    by_epoch: dict[float, list[float]] = {}
    for rows in runs:
        for row in rows:
            if row.get(metric) is not None:
                by_epoch.setdefault(row["epoch"], []).append(row[metric])
    epochs = sorted(by_epoch)
    means = [statistics.mean(by_epoch[e]) for e in epochs]
    spreads = [statistics.stdev(by_epoch[e]) if len(by_epoch[e]) > 1 else 0.0 for e in epochs]
    return epochs, means, spreads


def plot_overlaid(groups: dict[str, list[list[dict]]], metric: str, ylabel: str, path: Path, error_bars: bool) -> bool:
    """One line per group; False (nothing drawn) when no run has the metric."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(8, 5))
    drawn = False
    for label, runs in groups.items():
        epochs, means, spreads = curve(runs, metric)
        if not epochs:
            continue
        drawn = True
        if error_bars:
            axis.errorbar(epochs, means, yerr=spreads, marker="o", markersize=3, capsize=3, label=legend_label(label))
        else:
            axis.plot(epochs, means, marker="o", markersize=3, label=legend_label(label))
    axis.set(xlabel="epoch", ylabel=ylabel)
    axis.grid(alpha=0.3)
    if drawn and len(groups) <= MAX_LEGEND:
        # Beside the plot, never over it; the saved picture grows to hold it (bbox_inches="tight").
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0,
                    ncols=1 + (len(groups) - 1) // LEGEND_ROWS)
    if drawn:
        save_png(figure, path, bbox_inches="tight")
    else:
        plt.close(figure)
    return drawn


MAX_LEGEND = 30  # lines; more are told apart in the table, not by a legend
LEGEND_ROWS = 20  # entries per legend column beside a 5-inch-high plot
LABEL_WIDTH = 45  # characters per legend line


def legend_label(label: str) -> str:
    """A curve's label as legend lines: wrapped between settings, a long value (a path) cut to its end."""
    import textwrap

    parts = [part if len(part) <= LABEL_WIDTH else part.split("=", 1)[0] + "=..." + part[-(LABEL_WIDTH // 2):]
             for part in label.split(" ")]
    return "\n".join(textwrap.wrap(" ".join(parts), LABEL_WIDTH, break_long_words=False))


def write_sweep_page(directory: Path, table_rows: list[dict[str, Any]], groups: dict[str, list[list[dict]]],
                     error_bars: bool) -> Path:
    """summary.html in `directory`; the curve PNGs go in its summary_curves/ folder, and into the page."""
    folder = directory / "summary_curves"
    folder.mkdir(exist_ok=True)
    sections = [("Runs" if not error_bars else "Settings (mean and sd over seeds)", html_table(table_rows))]
    for metric, ylabel in CURVES:
        png = folder / f"{metric}.png"
        what = f"{ylabel} against epoch" + (", mean and sd over seeds" if error_bars else "")
        if plot_overlaid(groups, metric, ylabel, png, error_bars):
            sections.append((what, html_image(png)))
        else:
            sections.append((what, "<p>no run has this column in its metrics.csv</p>"))
    page = directory / "summary.html"
    write_report(page, f"cvrun summarize: {directory.absolute().name}", sections)
    return page


def write_compare_page(directory: Path, comparison: Any, runs: list[Any]) -> Path:
    """compare.html in `directory`: cvrun compare's table, verdicts, published figures and notes, and where
    dataset.labeled_per_class differs between the runs, the label-efficiency curve (compare_labels.png)."""
    import html

    from cvrun.report.compare import display_rows, heading, published_lines
    from cvrun.report.curves import LABELS_KEY, label_points, plot_label_efficiency

    def listing(lines: list[str]) -> str:
        return "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>"

    sections = [(heading(comparison), html_table(display_rows(comparison))),
                ("Verdicts", listing([s.verdict for s in comparison.settings if s.verdict]))]
    if published_lines(comparison):
        sections.append(("Published figures", listing(published_lines(comparison))))
    if comparison.notes:
        sections.append(("Notes", listing(comparison.notes)))
    if LABELS_KEY in comparison.keys or LABELS_KEY in comparison.unit_keys:
        points = label_points([(run.settings, run.summary.get(comparison.metric)) for run in runs
                               if run.summary.get("status") == "completed"],
                              [k for k in comparison.keys if k != LABELS_KEY])
        if points:
            png = directory / "compare_labels.png"
            plot_label_efficiency(points, comparison.metric, png)
            sections.append((f"{comparison.metric} against labels per class", html_image(png)))
    page = directory / "compare.html"
    write_report(page, f"cvrun compare: {directory.absolute().name}", sections)
    return page
