"""Loggers: the `logger` config group, a list (`logger=[csv,tensorboard,mlflow]`, default `[csv]`).

A logger is a Callback of the run's events (cvrun/engine/events.py) with its own config schema,
registered by name; adding one is one module here (every module here is imported below, which
registers its logger) and one YAML in configs/logger/. A logger that fails, or takes longer than its
`timeout` (a TrackerConfig option, seconds) over one event, warns once and the run goes on (metrics.csv,
the run's own record, is the exception).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from cvrun.loggers.base import LOGGERS, Logger, LoggerConfig, LoggerContext, TrackerConfig

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["LOGGERS", "Logger", "LoggerConfig", "LoggerContext", "TrackerConfig", "build_loggers"]


def build_loggers(cfg: Any, context: LoggerContext) -> list[Logger]:
    """One logger per entry of the run's `logger` section, in the order given."""
    return [LOGGERS.get(name)(options, context) for name, options in cfg.logger.items()]
