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

    from cvrun.engine import distributed
    from cvrun.engine.rundir import RunFolder

    run_path = distributed.start(cfg, HydraConfig.get().runtime.output_dir)
    try:
        return start_run(cfg, RunFolder(Path(run_path), writes=distributed.is_main())).get("best_val_acc1")
    finally:
        distributed.finish()


def start_run(cfg: Any, run: Any) -> dict:
    """Validate, record the resolved config, seed, and hand the run to its regime; a failure is recorded."""
    from omegaconf import OmegaConf

    from cvrun.config import TrainConfig, absolute_paths, validate
    from cvrun.engine.runtime import seed_everything
    from cvrun.regimes import run_regime

    # A resume that cannot start leaves the earlier run's record as it was.
    resumed = resumed_config(cfg, run) if cfg.trainer.resume is not None else None
    try:
        typed = resumed or validate(cfg, TrainConfig)
        absolute_paths(typed)
        if resumed is None:
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


# The settings a resumed run may change: they do not touch what it computes.
RESUME_MAY_CHANGE = ("trainer.progress", "trainer.num_workers")
NOT_RESUMABLE = {"knn": "it trains nothing; run it again",
                 "noisy_student": "resume the round folder that stopped, then start the later rounds anew"}


def resume_args(args: list[str]) -> list[str]:
    """`cvrun train trainer.resume=RUN_DIR`: Hydra runs in RUN_DIR itself and leaves its .hydra record alone."""
    from cvrun.cli import hydra_quote, override_args

    overrides = override_args(args) or []
    given = [o for o in overrides if o.split("=", 1)[0].lstrip("+") == "trainer.resume"]
    if not given:
        return args
    folder = Path(given[-1].split("=", 1)[1].strip("'\""))
    if "-m" in args or "--multirun" in args:
        raise UserError("trainer.resume carries on one run; drop -m")
    others = [o for o in overrides if o not in given and o.split("=", 1)[0] not in RESUME_MAY_CHANGE]
    if others:
        raise UserError(f"trainer.resume carries on with the run's own config.yaml; drop {' '.join(others)} "
                        f"(only {', '.join(RESUME_MAY_CHANGE)} may change; `cvrun reproduce RUN_DIR KEY=VALUE` "
                        "starts a changed copy)")
    if not folder.is_dir():
        raise UserError(f"trainer.resume={folder}: no such run folder")
    if not (folder / "config.yaml").is_file():
        raise UserError(f"trainer.resume={folder} is not a run folder (no config.yaml in it)")
    return [*args, f"hydra.run.dir={hydra_quote(str(folder.resolve()))}", "hydra.output_subdir=null"]


def resumed_config(cfg: Any, run: Any) -> Any:
    """The config a resumed run carries on with: its own config.yaml, with trainer.resume set."""
    from omegaconf import OmegaConf

    from cvrun.config import TrainConfig, validate

    typed = validate(OmegaConf.load(run.path / "config.yaml"), TrainConfig)
    where = f"trainer.resume={run.path}"
    summary = run.read_summary()
    if summary.get("status") == "completed":
        raise UserError(f"{where}: the run already completed (test_acc1 {summary.get('test_acc1')}); "
                        "there is nothing to carry on")
    if typed.regime.name in NOT_RESUMABLE:
        raise UserError(f"{where}: a {typed.regime.name} run cannot be resumed; {NOT_RESUMABLE[typed.regime.name]}")
    if not (run.checkpoints / "last.pt").is_file():
        raise UserError(f"{where}: there is no checkpoints/last.pt to carry on from; start a new run")
    run.remove_partial_writes()
    typed.trainer.resume = str(run.path)
    for override in given_overrides():
        key = override.split("=", 1)[0].lstrip("+")
        if key in RESUME_MAY_CHANGE:
            OmegaConf.update(typed, key, OmegaConf.select(cfg, key))
    return typed


def given_overrides() -> list[str]:
    """The overrides on the command line of this Hydra job (none outside one)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def run_app() -> int:
    return run_hydra("train", train)
