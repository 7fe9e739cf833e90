"""curves.png: loss and accuracy per epoch; label-efficiency curves: accuracy against labels per class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cvrun.report.figures import pyplot, save_png


def plot_curves(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    epochs = [row["epoch"] for row in rows]
    # Constrained layout: tight_layout warns on the console when it cannot fit the labels.
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for axis, metric, label in ((loss_axis, "loss", "loss"), (acc_axis, "acc1", "top-1 accuracy (%)")):
        for split in ("train", "val"):
            values = [row.get(f"{split}_{metric}") for row in rows]
            if any(v is not None for v in values):
                axis.plot(epochs, [float("nan") if v is None else v for v in values], marker="o", label=split)
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    save_png(figure, path)


LABELS_KEY = "dataset.labeled_per_class"


def label_points(records: list[tuple[dict[str, Any], Any]], line_keys: list[str]) -> list[tuple[str, float, float]]:
    """(line, labels per class, value) for each (settings, value) with a value and a number of labels; a line is
    named by its values of `line_keys`."""
    return [(" ".join(f"{k}={settings.get(k)}" for k in line_keys) or "all runs", float(settings[LABELS_KEY]),
             float(value)) for settings, value in records
            if isinstance(value, (int, float)) and str(settings.get(LABELS_KEY)).isdigit()]


def plot_label_efficiency(points: list[tuple[str, float, float]], ylabel: str, path: Path) -> None:
    """Accuracy against labels per class (log axis): one line per label (a regime, a setting) through the mean
    over seeds at each count, a band over the mean's 95% t interval. `points`: (line, labels per class, value)."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    from cvrun.report.stats import describe

    plt = pyplot()
    lines: dict[str, dict[float, list[float]]] = {}
    for line, count, value in points:
        lines.setdefault(line, {}).setdefault(count, []).append(value)
    figure, axis = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for index, (line, by_count) in enumerate(lines.items()):
        counts = sorted(by_count)
        spreads = [describe(by_count[c]) for c in counts]
        runs = max(s.n for s in spreads)
        axis.plot(counts, [s.mean for s in spreads], marker="o", color=f"C{index}",
                  label=f"{line} ({runs} seed{'s' if runs > 1 else ''})")
        if any(s.low is not None for s in spreads):
            axis.fill_between(counts, [s.mean if s.low is None else s.low for s in spreads],
                              [s.mean if s.high is None else s.high for s in spreads], color=f"C{index}", alpha=0.2,
                              linewidth=0)
    axis.set_xscale("log")
    ticks = sorted({count for by_count in lines.values() for count in by_count})
    axis.set_xticks(ticks)
    axis.xaxis.set_major_formatter(ScalarFormatter())
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set(xlabel="labels per class (log scale)", ylabel=ylabel,
             title="mean over seeds; bands: 95% t interval of the mean")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    save_png(figure, path)
