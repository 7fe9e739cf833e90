"""What every logger shares: its registry, config base and the context it is built with, and the deadline of
a tracker's calls."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cvrun.config import OptionConfig
from cvrun.engine.events import Callback
from cvrun.engine.rundir import RunFolder
from cvrun.errors import UserError
from cvrun.registry import Registry

LOGGERS: Registry[type["Logger"]] = Registry("logger")

# summary.json's final results that trackers log as metrics (TensorBoard beside the hparams).
FINAL_METRICS = ("best_val_acc1", "test_acc1", "test_acc5", "test_loss", "test_balanced_acc1", "test_macro_f1",
                 "epochs_run", "wall_seconds")
EVENTS = ("on_run_start", "on_train_images", "on_steps", "on_epoch_end", "on_checkpoint", "on_run_end")


@dataclass
class LoggerConfig(OptionConfig):
    pass


@dataclass
class TrackerConfig(LoggerConfig):
    timeout: float = 10.0  # seconds one event of the tracker may take; then it warns once and is dropped

    def check(self) -> None:
        if not self.timeout > 0:
            raise UserError(f"logger.{self.name}.timeout must be a positive number of seconds, got {self.timeout}")


@dataclass
class LoggerContext:
    """What a logger knows of the run it logs: its folder and config, and the sweep it belongs to."""

    run: RunFolder
    cfg: Any  # the run's validated TrainConfig
    sweep_dir: Path | None = None  # the sweep's root folder when the run is a sweep job


def within(seconds: float, what: str, function: Callable[..., Any], *args: Any) -> Any:
    """function(*args), or TimeoutError after `seconds`. The call runs in a daemon thread, which a blocked call
    (a server that does not answer, MLflow's minutes of HTTP retries, a hung network disk) may outlive but
    never keeps the process from exiting."""
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["value"] = function(*args)
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread as it is
            outcome["error"] = err

    thread = threading.Thread(target=call, name=f"cvrun-{what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"{what} took more than {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def bounded(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: "Logger", *args: Any) -> Any:
        return within(self.options.timeout, method.__name__, method, self, *args)
    return call


class Logger(Callback):
    """A tracker: its failures warn once and are dropped (`essential = False`), and each of its events is
    bounded by its `timeout` option (a TrackerConfig), so that a tracker never costs the run time either."""

    config: type = TrackerConfig
    essential = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.essential:
            if not issubclass(cls.config, TrackerConfig):
                raise TypeError(f"{cls.__name__}.config must be a TrackerConfig (its timeout bounds the events)")
            for event in EVENTS:
                if event in vars(cls):
                    setattr(cls, event, bounded(vars(cls)[event]))

    def __init__(self, options: Any, context: LoggerContext):
        self.options, self.context = options, context
