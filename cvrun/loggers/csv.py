"""`logger=csv` (the default): metrics.csv in the run folder, one row per epoch, rewritten whole each epoch."""

from __future__ import annotations

from typing import Any

from cvrun.loggers.base import LOGGERS, Logger, LoggerConfig


@LOGGERS.register("csv")
class CsvLogger(Logger):
    config = LoggerConfig
    # metrics.csv is the run's own record, not a tracker: a full disk fails the run, as for summary.json.
    essential = True

    def on_epoch_end(self, row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        self.context.run.write_metrics(rows)
