"""RunRecord: the callback that keeps a run folder's summary.json, curves.png and train.log lines.

Every run has it (one without training steps too); the logger list adds metrics.csv
(`csv`) and the trackers. On the run-end event curves.png is drawn before summary.json is written,
so a run reads `completed` only once its files are there.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cvrun.engine.events import Callback
from cvrun.engine.rundir import METRIC_COLUMNS, RunFolder
from cvrun.report.curves import plot_curves

log = logging.getLogger("cvrun")


class RunRecord(Callback):
    def __init__(self, run: RunFolder, epochs: int):
        self.run, self.epochs = run, epochs
        self.best_this_epoch = False

    def on_run_start(self, summary: dict[str, Any]) -> None:
        self.run.write_summary(summary)

    def on_checkpoint(self, name: str, path: Path) -> None:
        self.best_this_epoch |= name == "best.pt"

    def on_epoch_end(self, row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        val = (f"val loss {row['val_loss']:.4f} acc1 {row['val_acc1']:.2f}%" if row.get("val_acc1") is not None
               else "no validation split")
        # A regime's own columns (a mask rate, a pseudo-label accuracy) follow the standard ones.
        extra = "".join(f"  {key} {value:.2f}" for key, value in row.items()
                        if key not in METRIC_COLUMNS and isinstance(value, (int, float)))
        log.info("epoch %d/%d  lr %.3g  train loss %.4f acc1 %.2f%%  %s%s  (%.1fs, %.0f img/s, ETA %s)%s", row["epoch"],
                 self.epochs, row["lr"], row["train_loss"], row["train_acc1"], val, extra, row["epoch_seconds"],
                 row["train_images_per_second"], eta(rows, self.epochs), "  *best*" if self.best_this_epoch else "")
        self.best_this_epoch = False

    def on_run_end(self, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        if rows and self.run.writes:
            self.draw_curves(rows, ending_normally=summary["status"] == "completed")
        self.run.write_summary(summary)
        if summary["status"] == "completed" and summary.get("test_acc1") is not None:
            log.info("test: top-1 %.2f%%  top-5 %.2f%%  (%s images, best epoch %s)", summary["test_acc1"],
                     summary["test_acc5"], summary.get("test_samples"), summary.get("best_epoch"))

    def draw_curves(self, rows: list[dict[str, Any]], ending_normally: bool) -> None:
        """curves.png. A run ending for another reason (a signal, a fault) records its status even where the
        figure cannot be drawn: a signal that cut matplotlib's import short leaves it unimportable."""
        try:
            plot_curves(rows, self.run.path / "curves.png")
        except Exception as err:
            if ending_normally:
                raise
            log.warning("curves.png not drawn (%s: %s)", type(err).__name__, err)


def eta(rows: list[dict[str, Any]], epochs: int) -> str:
    """The time the remaining epochs take at the mean pace of those done (early stopping may end sooner)."""
    seconds = sum(row["epoch_seconds"] for row in rows) / len(rows) * (epochs - rows[-1]["epoch"])
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
