"""`cvrun train [OVERRIDES...]`: one run, or a sweep with -m."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cvrun.commands import run_hydra
from cvrun.errors import UserError

log = logging.getLogger("cvrun")


def train(cfg: Any) -> float | None:
    """One run; returns its best validation accuracy, the objective an optimising sweeper (Optuna) maximises."""
    from hydra.core.hydra_config import HydraConfig

    from cvrun.engine.rundir import RunFolder

    return start_run(cfg, RunFolder(Path(HydraConfig.get().runtime.output_dir))).get("best_val_acc1")


def start_run(cfg: Any, run: Any) -> dict:
    """Validate, record the resolved config, seed, and hand the run to its regime; a failure is recorded."""
    from omegaconf import OmegaConf

    from cvrun.config import TrainConfig, absolute_paths, validate
    from cvrun.engine.runtime import seed_everything
    from cvrun.regimes import run_regime

    try:
        typed = validate(cfg, TrainConfig)
        if typed.trainer.resume is not None:
            raise UserError("trainer.resume is not available in this version yet; start a new run")
        absolute_paths(typed)
        run.write_config(OmegaConf.to_yaml(typed))
        log.info("run folder: %s", run.path)
        seed_everything(typed.trainer.seed, typed.trainer.deterministic)
        return run_regime(typed, run)
    except UserError as err:
        run.update_summary(status="failed", reason=str(err))
        raise
    except Exception as err:
        run.update_summary(status="failed", reason=f"{type(err).__name__}: {err}")
        raise


def run_app() -> int:
    return run_hydra("train", train)
