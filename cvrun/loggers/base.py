"""What every logger shares: its registry, config base and the context it is built with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvrun.config import OptionConfig
from cvrun.engine.events import Callback
from cvrun.engine.rundir import RunFolder
from cvrun.registry import Registry

LOGGERS: Registry[type["Logger"]] = Registry("logger")


@dataclass
class LoggerConfig(OptionConfig):
    pass


@dataclass
class LoggerContext:
    """What a logger knows of the run it logs: its folder and config, and the sweep it belongs to."""

    run: RunFolder
    cfg: Any  # the run's validated TrainConfig
    sweep_dir: Path | None = None  # the sweep's root folder when the run is a sweep job


class Logger(Callback):
    """A tracker: its failures warn once and are dropped (`essential = False`)."""

    config: type = LoggerConfig
    essential = False

    def __init__(self, options: Any, context: LoggerContext):
        self.options, self.context = options, context
