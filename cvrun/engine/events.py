"""What the trainer tells the world about a run: events, received by callbacks.

The trainer writes no run file itself but its checkpoints: summary.json, curves.png and train.log
come from cvrun.report.record.RunRecord, metrics.csv and the trackers from the loggers of
cvrun/loggers. A callback implements the events it needs:

    on_run_start(summary)        summary.json's keys as the run starts (status running)
    on_train_images(images)      the first training batch's images as the model gets them (uint8 NCHW)
    on_steps(step, values)       every trainer.log_every_n_steps steps: lr, train_loss
    on_epoch_end(row, rows)      one metrics row, and every row so far
    on_checkpoint(name, path)    checkpoints/last.pt or best.pt written
    on_run_end(summary, rows)    the final summary (completed, interrupted, failed, pruned) and the rows

A callback may end a run after an epoch by raising EndRun from on_epoch_end (a search's pruner does): the
trainer records the status it names and skips the test.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger("cvrun")


class EndRun(Exception):
    """Raised by a callback after an epoch: the run ends now with `status` (not tested); the message says why."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status


class Callback:
    """A receiver of run events. `essential`: its failure is the run's (a file of the run folder);
    otherwise (a tracker) it warns once and is dropped: a logger never costs a result."""

    essential = True

    def on_run_start(self, summary: dict[str, Any]) -> None:
        pass

    def on_train_images(self, images: Any) -> None:
        pass

    def on_steps(self, step: int, values: dict[str, float]) -> None:
        pass

    def on_epoch_end(self, row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        pass

    def on_checkpoint(self, name: str, path: Path) -> None:
        pass

    def on_run_end(self, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        pass


class Events:
    """Sends each event to every callback, in order."""

    def __init__(self, callbacks: Sequence[Callback] = ()):
        self.callbacks = list(callbacks)

    def emit(self, event: str, *args: Any, quiet: tuple[type[BaseException], ...] = ()) -> None:
        """Call `event` on each callback. `quiet`: exceptions of essential callbacks to swallow (the run is
        already ending for another reason, and recording it as far as the disk allows is the best left)."""
        for callback in list(self.callbacks):
            try:
                getattr(callback, event)(*args)
            except EndRun:
                raise
            except quiet:
                continue
            except Exception as err:  # noqa: BLE001 - a tracker's failure of any kind
                if callback.essential:
                    raise
                log.warning("%s failed (%s: %s); the run goes on without it", type(callback).__name__,
                            type(err).__name__, str(err).splitlines()[0] if str(err) else "")
                self.callbacks.remove(callback)
