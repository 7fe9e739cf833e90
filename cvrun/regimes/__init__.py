"""Training regimes: name -> function(cfg, run folder) -> summary.

A regime prepares models, data and loss, then hands them to the one
Trainer; it never copies the loop. Adding one is a module with a function
decorated by @register_regime, imported below, and a YAML file in
configs/regime/.
"""

from __future__ import annotations

from typing import Any, Callable

from cvrun.errors import UserError

REGIMES: dict[str, Callable[[Any, Any], dict]] = {}


def register_regime(name: str):
    def add(fn):
        REGIMES[name] = fn
        return fn
    return add


def run_regime(cfg: Any, run: Any) -> dict:
    if cfg.regime.name not in REGIMES:
        raise UserError(f"unknown regime '{cfg.regime.name}'; valid regimes: {', '.join(sorted(REGIMES))}")
    return REGIMES[cfg.regime.name](cfg, run)


from cvrun.regimes import (distill, feature_extract, finetune, knn, lwf, noisy_student,  # noqa: E402,F401
                           pseudo_label, scratch)  # (importing them registers the regimes)
