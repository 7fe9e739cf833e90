"""A search's study: where Optuna stores it, its pruner, and the reports a trial's run sends it.

The study lives in the sweep folder, so the folder is the whole search: optuna.db (SQLite) by default, or
optuna.journal (Optuna's journal file storage, safe on a file system that several machines share: the
default under the slurm launcher). hydra.sweeper.storage may also name an SQLAlchemy URL of a database server.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cvrun.engine.events import Callback, EndRun

log = logging.getLogger("cvrun")

STUDY_FILES = {"sqlite": "optuna.db", "journal": "optuna.journal"}


def storage_kind(storage: str | None, launcher_target: str) -> str:
    """sqlite, journal or a URL: hydra.sweeper.storage, or the default for the launcher (journal for SLURM)."""
    return storage or ("journal" if "Slurm" in launcher_target else "sqlite")


def study_storage(kind: str, sweep_dir: Path) -> Any:
    """The Optuna storage object of a search: the same study for the sweeper and for every trial's run."""
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    url = storage_url(kind, sweep_dir)
    if kind == "journal":
        return JournalStorage(JournalFileBackend(url))
    # A trial's run reports every epoch while the sweeper waits: SQLite's writers take turns (timeout in s).
    return RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None)


def storage_url(kind: str, sweep_dir: Path) -> str:
    """Where the study is: an SQLAlchemy URL, or the journal file's path (what optuna-dashboard opens too)."""
    if kind in STUDY_FILES:
        path = sweep_dir / STUDY_FILES[kind]
        return f"sqlite:///{path}" if kind == "sqlite" else str(path)
    return kind


def make_pruner(search: Any, epochs: int) -> Any:
    """Optuna's pruner that hparams_search.pruner names; none may stop a trial before pruner_warmup_epochs."""
    from optuna import pruners

    warmup = search.pruner_warmup_epochs
    build = {
        "none": pruners.NopPruner,
        # A step is an epoch, counted from 1; Optuna's median pruner may prune once step >= n_warmup_steps.
        "median": lambda: pruners.MedianPruner(n_startup_trials=search.pruner_startup_trials, n_warmup_steps=warmup),
        "successive_halving": lambda: pruners.SuccessiveHalvingPruner(min_resource=warmup),
        "hyperband": lambda: pruners.HyperbandPruner(min_resource=warmup, max_resource=max(epochs, warmup)),
    }
    return build[search.pruner]()


class TrialReport(Callback):
    """Reports the run's trainer.monitor (validation top-1 by default) to its trial after every epoch; ends the run
    when the pruner says.

    Not essential: a study that cannot be reached costs the trial its pruning, never its result.
    """

    essential = False

    def __init__(self, trial: Any, pruner: str, monitor: str = "val_acc1"):
        self.trial = trial
        self.pruner = pruner
        self.monitor = monitor

    def on_epoch_end(self, row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        value = row.get(self.monitor)
        if value is None:
            return
        self.trial.report(value, row["epoch"])
        if self.trial.should_prune():
            from cvrun.config import MONITOR_NAMES

            shown = f"{value:.4f}" if self.monitor == "val_loss" else f"{value:.2f}%"
            raise EndRun("pruned", f"pruned by the {self.pruner} pruner after epoch {row['epoch']} "
                                   f"({MONITOR_NAMES[self.monitor]} {shown})")


def trial_reporters(cfg: Any) -> list[Callback]:
    """A TrialReport for a sweep job of an Optuna search (on rank 0); nothing for any other run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from cvrun.config import OptunaSweeperConfig
    from cvrun.parallel import is_main

    if not HydraConfig.initialized() or not is_main():
        return []
    hydra = HydraConfig.get()
    # A sweep job whose hydra.sweeper names cvrun's Optuna sweeper is a trial.
    if hydra.mode != RunMode.MULTIRUN or hydra.sweeper.get("_target_") != OptunaSweeperConfig._target_:
        return []
    import optuna

    try:
        storage = study_storage(storage_kind(hydra.sweeper.storage, hydra.launcher._target_),
                                Path(hydra.sweep.dir).absolute())
        study_id = storage.get_study_id_from_name(hydra.sweeper.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, hydra.job.num)
        study = optuna.load_study(study_name=hydra.sweeper.study_name, storage=storage,
                                  pruner=make_pruner(cfg.hparams_search, cfg.trainer.epochs))
    except Exception as err:  # noqa: BLE001 - the study, like a tracker, never costs the run its result
        log.warning("trial %d cannot reach its study (%s: %s); it trains without reports or pruning", hydra.job.num,
                    type(err).__name__, str(err).splitlines()[0] if str(err) else "")
        return []
    log.info("trial %d of the study in %s (pruner: %s)", hydra.job.num, hydra.sweep.dir, cfg.hparams_search.pruner)
    return [TrialReport(optuna.trial.Trial(study, trial_id), cfg.hparams_search.pruner, cfg.trainer.monitor)]
