"""curves.png: loss and accuracy per epoch."""

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
