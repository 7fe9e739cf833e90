"""One Hydra app per command; this module gives them a shared entry point."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Callable

from cvrun.errors import UserError

log = logging.getLogger("cvrun")


def register_option_groups() -> None:
    """Make every option group's registry known to cvrun.config, which types each option section (model,
    dataset, aug, regime, optim, sched, logger) on the schema of the option it names. config sits below the
    packages that register options, so they are handed to it from here."""
    from cvrun.augment import POLICIES
    from cvrun.config import register_option_group
    from cvrun.data.sources import SOURCES
    from cvrun.engine.optim import OPTIMIZERS
    from cvrun.engine.sched import SCHEDULES
    from cvrun.loggers import LOGGERS
    from cvrun.models import MODELS
    from cvrun.regimes import REGIMES

    for section, registry in (("dataset", SOURCES), ("model", MODELS), ("aug", POLICIES), ("regime", REGIMES),
                              ("optim", OPTIMIZERS), ("sched", SCHEDULES), ("logger", LOGGERS)):
        register_option_group(section, registry)


# The groups whose options' schemas are stored for their YAMLs' defaults lists (<group>/<name>_schema); the
# logger's options are packaged under logger.<name> and typed by cvrun.config alone.
SCHEMA_GROUPS = ("dataset", "model", "aug", "regime", "optim", "sched")


def register_schemas() -> None:
    """Put the dataclass schemas where the configs' defaults find them: each command's (train_schema, ...)
    and each option's (model/<name>_schema, regime/<name>_schema, ..., named in the defaults list of an
    option's YAML when it has keys of its own); and the resolvers the run and sweep folders go through:
    `unique` (claimed once), `short_name` (a name the file system accepts), `path_keys` (the keys left out
    of a sweep job's folder name)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from cvrun.config import SCHEMAS, OptunaSweeperConfig, option_registry
    from cvrun.io import forget_claims, short_name
    from cvrun.registry import load_plugins

    load_plugins()  # again in every process Hydra runs a job in (a launcher's)
    register_option_groups()
    store = ConfigStore.instance()
    for command, schema in SCHEMAS.items():
        store.store(name=f"{command}_schema", node=schema)
    for group in SCHEMA_GROUPS:
        for name, option in option_registry(group).items():
            store.store(group=group, name=f"{name}_schema", node=option.config)
    store.store(group="hydra/sweeper", name="optuna_schema", node=OptunaSweeperConfig)
    register_sweeper()
    forget_claims()
    OmegaConf.register_new_resolver("unique", lambda path: str(stopping(claim_new_folder, path)), use_cache=True,
                                    replace=True)
    # Not cached by OmegaConf: launchers copy the sweep's cache into every job's config. claim_folder keeps
    # one claim per job.
    OmegaConf.register_new_resolver("job_folder", job_folder, replace=True)
    OmegaConf.register_new_resolver("short_name", short_name, replace=True)
    OmegaConf.register_new_resolver("help_groups", help_groups, replace=True)
    OmegaConf.register_new_resolver("path_keys", lambda: sorted(path_keys_of_train()), replace=True)


def path_keys_of_train() -> set[str]:
    """The train config's keys that name files or folders (their schemas mark them)."""
    from cvrun.config import TrainConfig, schema_path_keys

    return schema_path_keys(TrainConfig)


def claim_new_folder(path: str) -> Any:
    """A new run or sweep folder under the current one (claim_folder), or what to do where it cannot be made."""
    from cvrun.io import StorageError, claim_folder

    try:
        return claim_folder(path)
    except StorageError as err:
        raise err.with_advice("start cvrun in a folder you can write to, or name one with hydra.run.dir "
                              "(hydra.sweep.dir with -m)") from None


class LaunchStopped(BaseException):
    """A UserError or StorageError met where Hydra would catch it and print a traceback (a resolver, a callback).

    Hydra's handlers catch Exception; this passes them, and run_hydra prints the error in one line."""

    def __init__(self, error: UserError | Exception):
        super().__init__(str(error))
        self.error = error


def stopping(function: Callable[..., Any], *args: Any) -> Any:
    """function(*args), a UserError or StorageError in it raised as LaunchStopped."""
    from cvrun.io import StorageError

    try:
        return function(*args)
    except (UserError, StorageError) as err:
        raise LaunchStopped(err) from None


def job_folder(subdir: str, _root_: Any) -> str:
    """hydra.sweep.subdir claimed for this sweep job, as a run folder is: a folder another job (or anything
    else) already has is never written into; the job gets the name with a suffix (_2, _3, ...), said in the log.

    Several tasks of one job (SLURM) follow rank 0, which claims it: the run trains in rank 0's folder.
    """
    from pathlib import Path

    from cvrun.io import claim_folder
    from cvrun.parallel import adopt_slurm_tasks, is_main

    adopt_slurm_tasks()
    if not is_main():
        return subdir
    sweep_dir, job = Path(str(_root_.hydra.sweep.dir)), int(_root_.hydra.job.num)
    # An empty subdir would put the job in the sweep folder itself, beside the sweep's own files.
    wanted = sweep_dir / (subdir if subdir.strip(" /.") else str(job))
    claimed = stopping(claim_folder, str(wanted), (str(wanted.absolute()), job))
    if claimed != wanted:
        log.warning("job %d: %s is taken (another job of the sweep has it); this job runs in %s",
                    job, wanted, claimed)
    return str(claimed if Path(subdir).is_absolute() else claimed.relative_to(sweep_dir))


def help_groups() -> str:
    """`cvrun COMMAND --help`'s config groups: Hydra's list without the schemas cvrun stores beside the
    options (aug/basic_schema, ...), which are no options of their own."""
    from hydra.core.global_hydra import GlobalHydra

    listing = GlobalHydra.instance().hydra.format_config_groups(lambda g: g != "hydra" and not g.startswith("hydra/"))
    lines = []
    for line in listing.splitlines():
        group, _, options = line.partition(": ")
        lines.append(f"{group}: {', '.join(o for o in options.split(', ') if not o.endswith('_schema'))}")
    return "\n".join(lines)


def register_sweeper() -> None:
    """cvrun's Optuna sweeper among Hydra's plugins. Hydra finds plugins by walking the hydra_plugins package
    with pkgutil, which does not see into setuptools' editable installs (`pip install -e .`): registered here."""
    from hydra.core.plugins import Plugins
    from hydra_plugins.cvrun_optuna import OptunaSweeper

    Plugins.instance().register(OptunaSweeper)


def run_hydra(config_name: str, task: Callable[[Any], Any]) -> int:
    """Run `task` as a Hydra app; return the process exit status.

    A UserError inside the task prints one line and exits 2; so does one met by a
    resolver or callback (LaunchStopped), before any job. Hydra rejecting
    the command line or config (before the task starts) also exits 2: both
    are mistakes the user can fix. A StorageError (full disk, read-only
    folder) prints one line and exits 1. Anything else keeps Hydra's status.

    In a sweep (-m) a failing job (user error, diverged loss, exception) is
    reported and recorded, and the next job runs; the sweep exits 1 at the
    end if any job failed. Ctrl-C still stops the whole sweep.
    """
    import hydra

    from cvrun.io import StorageError, end_launch
    from cvrun.paths import config_dir

    register_schemas()
    started = False
    failed_jobs: list[str] = []
    sweep = sys.modules.get("cvrun.report.sweep")
    if sweep is not None:  # a launch before this one in the same process (tests) counted its own jobs
        sweep.SweepSummary.failed_jobs, sweep.SweepSummary.unwritten = 0, False

    def guarded_task(cfg: Any) -> Any:
        nonlocal started
        started = True
        in_sweep = _in_sweep()
        try:
            return task(cfg)
        except (UserError, StorageError) as err:
            print(f"cvrun: error: {err}", file=sys.stderr)
            if not in_sweep:
                raise SystemExit(err.exit_code) from None
            failed_jobs.append(str(err))
        except SystemExit as exit_:
            if not in_sweep or exit_.code in (0, None, 130):
                raise
            failed_jobs.append(f"exit status {exit_.code}")
        except Exception as err:
            if not in_sweep:
                raise
            log.exception("job failed")
            failed_jobs.append(f"{type(err).__name__}: {err}")
        return None

    app = hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")(guarded_task)
    try:
        app()
    except LaunchStopped as stop:
        print(f"cvrun: error: {stop.error}", file=sys.stderr)
        return stop.error.exit_code
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        return 2 if code == 1 and not started else code
    finally:
        end_launch()
    sweep = sys.modules.get("cvrun.report.sweep")  # the sweep callback, on any launcher, saw every job end
    failed = max(len(failed_jobs), 0 if sweep is None else sweep.SweepSummary.failed_jobs)
    if failed:
        print(f"cvrun: {failed} sweep job(s) failed; their reasons are in the sweep's summary.csv", file=sys.stderr)
    return 1 if failed or (sweep is not None and sweep.SweepSummary.unwritten) else 0


def _in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


class OneLineParser(argparse.ArgumentParser):
    """argparse for the commands that do not use Hydra (summarize, reproduce): a mistake is one line, exit 2."""

    def error(self, message: str) -> None:
        raise UserError(f"{self.prog.split()[-1]}: {message}")


def run_parsed(parser: OneLineParser, task: Callable[[argparse.Namespace], int]) -> int:
    """Parse the command line and run `task`; a UserError prints one line and exits 2, a StorageError 1."""
    from cvrun.io import StorageError

    register_option_groups()  # the runs' saved configs are typed on their options' schemas
    try:
        return task(parser.parse_args(sys.argv[1:]))
    except (UserError, StorageError) as err:
        print(f"cvrun: error: {err}", file=sys.stderr)
        return err.exit_code
