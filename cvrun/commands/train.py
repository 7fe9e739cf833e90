"""`cvrun train [OVERRIDES...]`: one run, or a sweep with -m."""

from __future__ import annotations

import copy
import logging
import re
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator

from hydra.experimental.callback import Callback

from cvrun.commands import run_hydra
from cvrun.errors import ResumeRefused, UserError
from cvrun.overrides import hydra_quote, override_args, with_overrides

log = logging.getLogger("cvrun")


def train(cfg: Any) -> float | None:
    """`cvrun train`'s task: one run; returns its best validation accuracy, the objective an optimising sweeper
    (Optuna) maximises. In a Hydra job it trains in the job's folder; a config composed outside one (Hydra's
    compose API) trains in a folder of its own, as cvrun.api.train's do (train_composed)."""
    from cvrun.commands import register_option_groups

    register_option_groups()  # again in a launcher's process (joblib, submitit), which did not run the command line
    summary = train_in_job(cfg) if in_hydra_job() else train_composed(cfg)[1]
    return summary.get("best_val_acc1")


def in_hydra_job() -> bool:
    """Whether a Hydra job runs this: Hydra's config is set and names the job's folder. A notebook that ran a
    command in-process keeps Hydra's config of that command, without a folder, once the command has ended."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    return HydraConfig.initialized() and OmegaConf.select(HydraConfig.get(), "runtime.output_dir",
                                                          throw_on_missing=False) is not None


def train_in_job(cfg: Any) -> dict:
    """One run in the folder of the Hydra job that runs it (`cvrun train`, a sweep's job)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from cvrun.engine.rundir import use_cvrun_log_format
    from cvrun.parallel import adopt_slurm_tasks, is_main

    use_cvrun_log_format()
    adopt_slurm_tasks()  # a launcher's multi-task SLURM job runs this without cvrun's command line
    if not is_main():  # every task of such a job runs Hydra's job: train.log stays rank 0's
        drop_log_files()
    hydra = HydraConfig.get()
    sweep_dir = Path(hydra.sweep.dir).absolute() if hydra.mode == RunMode.MULTIRUN else None
    return train_in(cfg, hydra.runtime.output_dir, sweep_dir)


# The overrides of a run composed outside a Hydra job (cvrun.api.train), as given_overrides reads them there
# (None in a Hydra job; Hydra's own record may be an earlier job's in a process that ran one).
composed_overrides: ContextVar[list[str] | None] = ContextVar("composed_overrides", default=None)


def train_composed(cfg: Any) -> tuple[Path, dict]:
    """One run of a config composed outside a Hydra job: its folder and summary.

    The folder is the config's hydra.run.dir (composed with return_hydra_config=True; Hydra's record goes in
    its .hydra/ as a job's does), else train.yaml's; it is claimed once the config has passed the checks a
    command line gets before its folder exists. cvrun's log lines go to the console and the run's train.log
    for the run's length, and to no other handler.
    """
    from omegaconf import open_dict, read_write

    from cvrun.config import TrainConfig, validate
    from cvrun.engine.rundir import logging_to, quiet_third_party_logs

    task_cfg = copy.deepcopy(cfg)
    with read_write(task_cfg), open_dict(task_cfg):
        hydra = task_cfg.pop("hydra", None)
    typed = validate(task_cfg, TrainConfig)
    if typed.trainer.resume is not None:  # a resume carries its run on in that run's folder
        run_path = Path(typed.trainer.resume).expanduser().absolute()
        if not (run_path / "config.yaml").is_file():
            raise UserError(f"trainer.resume={run_path} is not a run folder (no config.yaml in it)")
    else:
        check_job(typed)
        run_path = composed_folder(task_cfg, hydra)
        if hydra is not None and hydra.output_subdir is not None:
            write_hydra_record(run_path / str(hydra.output_subdir), task_cfg, hydra, run_path)
    quiet_third_party_logs()
    cvrun_log = logging.getLogger("cvrun")
    propagates, level = cvrun_log.propagate, cvrun_log.level
    cvrun_log.propagate = False  # a handler of the root logger (an earlier Hydra job's train.log) gets none
    given = composed_overrides.set(list(hydra.overrides.task) if hydra is not None else [])
    try:
        with logging_to(run_path / "train.log", console=True):
            return run_path, train_in(task_cfg, str(run_path), None)
    finally:
        cvrun_log.propagate, cvrun_log.level = propagates, level
        composed_overrides.reset(given)


def train_in(cfg: Any, output_dir: str, sweep_dir: Path | None) -> dict:
    """One run in `output_dir` (on every rank, rank 0's): the run itself, whoever chose its folder."""
    from cvrun.engine import distributed
    from cvrun.engine.rundir import RunFolder
    from cvrun.engine.runtime import signals_raise
    from cvrun.parallel import is_main

    # A train.log that cannot be written (full disk) is reported by the write that fails next,
    # in one line; logging's own report would be a traceback per line.
    logging.raiseExceptions = False
    refuse_under_torchrun(cfg)
    run_path = distributed.start(cfg, output_dir)
    try:
        with signals_raise(), held_folder(Path(run_path), is_main()):
            run = RunFolder(Path(run_path), writes=is_main())
            summary = start_run(cfg, run, sweep_dir)
        # The ranks leave the process group together, once rank 0 has written the run's files, so that no
        # rank closes its connections while another still uses them.
        distributed.barrier()
        return summary
    finally:
        distributed.finish()


def composed_folder(cfg: Any, hydra: Any, kind: str = "run") -> Path:
    """The folder a composed config's run (kind "run") or sweep ("sweep") claims: its hydra.<kind>.dir, else the
    one train.yaml names."""
    from hydra.core.utils import setup_globals
    from omegaconf import OmegaConf

    from cvrun.io import forget_claims
    from cvrun.paths import config_dir

    setup_globals()  # Hydra's `now` resolver, which the folder's name takes the time from
    forget_claims()  # a new launch: never the folder an earlier run of this process claimed
    hydra = hydra if hydra is not None else OmegaConf.load(config_dir() / "train.yaml").hydra
    named = copy.deepcopy(cfg)  # the folder's name may name any of the config's keys
    OmegaConf.update(named, f"hydra.{kind}.dir", OmegaConf.to_container(hydra[kind], resolve=False)["dir"],
                     force_add=True)
    return Path(str(OmegaConf.select(named, f"hydra.{kind}.dir"))).absolute()


def write_hydra_record(folder: Path, cfg: Any, hydra: Any, run_path: Path) -> None:
    """What a Hydra job keeps in its .hydra/: the job's config, Hydra's own (its output_dir this run's) and the
    overrides the config was composed with."""
    from omegaconf import OmegaConf, open_dict, read_write

    from cvrun.io import atomic_write_bytes

    hydra = copy.deepcopy(hydra)
    with read_write(hydra), open_dict(hydra):
        hydra.runtime.output_dir = str(run_path)
    for name, node in (("config.yaml", cfg), ("hydra.yaml", OmegaConf.create({"hydra": hydra})),
                       ("overrides.yaml", hydra.overrides.task)):
        atomic_write_bytes(folder / name, OmegaConf.to_yaml(node).encode())
def check_job(cfg: Any) -> None:
    """What a job's regime can check before its run folder exists (its sources, the data's extra folder, the
    device); a resume carries on a config that was checked when the run started."""
    from cvrun.regimes import REGIMES

    if cfg.trainer.resume is None:
        REGIMES.get(cfg.regime.name).check_before_run(cfg)


def drop_log_files() -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(handler)
        handler.close()


def refuse_under_torchrun(cfg: Any) -> None:
    from cvrun.parallel import world_size
    from cvrun.regimes import REGIMES

    reason = REGIMES.get(cfg.regime.name).not_distributed
    if world_size() > 1 and reason is not None:
        raise UserError(f"regime={cfg.regime.name} does not run under torchrun or as several SLURM tasks ({reason}); "
                        "start it as one process with cvrun train")


@contextmanager
def held_folder(folder: Path, writes: bool = True) -> Iterator[None]:
    """The OS lock on a run folder while this process trains there (none on torchrun ranks other than 0).

    The command line may have locked it already (a resume, a named hydra.run.dir): the lock is released
    when the run ends, either way.
    """
    from cvrun.io import unlock_folder

    if not writes:
        yield
        return
    lock_run_folder(folder)
    try:
        yield
    finally:
        unlock_folder(folder)


def lock_run_folder(folder: Path) -> None:
    from cvrun.io import FolderBusy, lock_folder

    try:
        lock_folder(folder)
    except FolderBusy as busy:
        raise UserError(f"{folder} is in use: {busy} is training there; wait for it to end or stop it "
                        "(a run folder takes one process at a time)") from None


def start_run(cfg: Any, run: Any, sweep_dir: Path | None = None) -> dict:
    """Validate, record the resolved config, seed, and hand the run to its regime; every ending is recorded."""
    from omegaconf import OmegaConf

    from cvrun.config import TrainConfig, absolute_paths, validate
    from cvrun.engine.rundir import resume_hint
    from cvrun.engine.runtime import Interrupted, seed_everything
    from cvrun.io import StorageError
    from cvrun.regimes import REGIMES
    from cvrun.search.study import trial_reporters

    # A resume that cannot start leaves the earlier run's record as it was.
    resumed = resumed_config(cfg, run) if cfg.trainer.resume is not None else None
    try:
        typed = resumed or validate(cfg, TrainConfig)
        absolute_paths(typed)
        if resumed is None:
            run.write_config(OmegaConf.to_yaml(typed))
        log.info("run folder: %s", run.path)
        seed_everything(typed.trainer.seed, typed.trainer.deterministic)
        callbacks = [*run_callbacks(typed, run, sweep_dir), *trial_reporters(typed)]  # a search's trial reports
        regime = REGIMES.get(typed.regime.name)(typed, run, callbacks, run_callbacks)
        return regime.start()
    except ResumeRefused:
        raise
    except (UserError, StorageError) as err:
        record_end(run, "failed", str(err))
        raise
    except Interrupted as err:
        record_end(run, "interrupted", f"interrupted by {err} before training started; {resume_hint(run.path)}")
        raise SystemExit(130) from None
    except SystemExit as exit_:
        if exit_.code == 130 and run.read_summary().get("status") != "interrupted":  # a stage of the run was
            record_end(run, "interrupted", f"interrupted by a signal in one of its stages; {resume_hint(run.path)}")
        raise
    except Exception as err:
        record_end(run, "failed", f"{type(err).__name__}: {err}")
        raise


def run_callbacks(cfg: Any, run: Any, sweep_dir: Path | None = None) -> list:
    """What receives a run's events: its record (summary.json, curves.png, train.log), then its loggers."""
    from cvrun.loggers import LoggerContext, build_loggers
    from cvrun.report.record import RunRecord

    return [RunRecord(run, cfg.trainer.epochs), *build_loggers(cfg, LoggerContext(run, cfg, sweep_dir))]


def record_end(run: Any, status: str, reason: str) -> None:
    """Write the run's status and reason where the folder can still be written (never raises on a full disk,
    and a second Ctrl-C during the write leaves the previous summary.json)."""
    from cvrun.engine.runtime import Interrupted
    from cvrun.io import StorageError

    try:
        run.update_summary(status=status, reason=reason)
    except (StorageError, Interrupted):
        pass


# The settings a resumed run may change: they do not touch what it computes.
RESUME_MAY_CHANGE = ("trainer.progress", "trainer.num_workers")
# What makes a folder a run's (or a sweep's): Hydra's record, cvrun's files, or a training lock.
RUN_MARKERS = (".hydra", "config.yaml", "summary.json", "metrics.csv", "checkpoints", "train.log", ".lock")
SWEEP_MARKERS = ("multirun.yaml", "jobs.jsonl", "summary.csv", "optuna.db", "optuna.journal")


def override_value(override: str) -> str:
    """The value of `key=value` as a string, with the quotes quote_paths may have added removed."""
    value = override.split("=", 1)[1]
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1].replace("\\'", "'").replace("\\\\", "\\")
    return value


def key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def hydra_args(args: list[str]) -> list[str]:
    """Under torchrun: one run (no -m), and Hydra makes a folder and a log on rank 0 only."""
    from cvrun.parallel import is_main, world_size

    if world_size() == 1:
        return args
    if "-m" in args or "--multirun" in args:
        raise UserError("torchrun trains one run over several processes; drop -m (sweep without torchrun)")
    if is_main():
        return args
    kept = [arg for arg in args if not arg.startswith(("hydra.run.dir=", "hydra.output_subdir="))]
    return [*kept, "hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=disabled"]


def expand_args(args: list[str]) -> list[str]:
    """The command line as every check reads it: `trainer.seeds=N` (with -m) becomes trainer.seed=0,...,N-1."""
    from cvrun.commands.seeds import expand_seeds

    return expand_seeds(args)


def prepare_args(args: list[str]) -> list[str]:
    """What Hydra gets for `cvrun train`: a resume runs in its own folder, a new run never in another's."""
    from cvrun.parallel import is_main

    resume = resume_args(args) or search_resume_args(args)
    if resume is None and is_main():  # other torchrun ranks follow rank 0's folder
        refuse_taken_folder(args)
    # The log is train.log also when Hydra runs a saved config.yaml, which has no hydra section.
    return hydra_args(with_overrides(resume or args, ["hydra.job.name=train"]))


def refuse_taken_folder(args: list[str]) -> None:
    """hydra.run.dir naming a folder that holds a run or a sweep (or hydra.sweep.dir, with -m) is a user error.

    A named run folder is locked here, before Hydra writes into it: of two runs started at once
    with the same hydra.run.dir, the second is refused. A sweep folder is locked when the sweep starts
    (SweepFolder), for the sweep's whole life.
    """
    from cvrun.io import lock_holder, storage_fault

    sweep = "-m" in args or "--multirun" in args
    key = "hydra.sweep.dir" if sweep else "hydra.run.dir"
    for arg in args:
        if key_of(arg) != key or "=" not in arg:
            continue
        folder = Path(override_value(arg)).expanduser()
        holder = lock_holder(folder) if folder.is_dir() else None
        if holder is not None:
            raise UserError(f"{folder} is in use: {holder} {activity(folder)} there; wait for it to end or name "
                            f"another {key}")
        refuse_held_folder(folder, key, sweep)
        if not sweep:
            if folder.exists() and not folder.is_dir():
                raise UserError(f"{key}={folder} is a file; name a folder for the run")
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise storage_fault(folder, err) from None
            lock_run_folder(folder)


def activity(folder: Path) -> str:
    """What the process holding `folder`'s lock does there, as its files tell."""
    return "runs a sweep" if any((folder / name).exists() for name in SWEEP_MARKERS) else "is training"


def refuse_held_folder(folder: Path, key: str, sweep: bool, search_resume: bool = False) -> None:
    """A UserError when `folder` holds a run or a sweep: a new run (sweep=False) or sweep takes a folder of its own.

    A sweep's own lock file is no run's; a search that carries on (search_resume) is at home among a sweep's files.
    """
    from cvrun.io import LOCK_FILE

    runs = [name for name in RUN_MARKERS if (folder / name).exists() and not (sweep and name == LOCK_FILE)]
    sweeps = [] if search_resume else [name for name in SWEEP_MARKERS if (folder / name).exists()]
    if not sweeps and not runs:
        return
    # A sweep's files first: a sweep folder holds a lock file too.
    kind, held = ("sweep", sweeps[0]) if sweeps else ("run", runs[0])
    what = "sweep" if sweep else "run"
    if kind == what:
        advice = ("leave it out for a new timestamped folder or name a new one" if sweep else
                  f"leave it out for a new timestamped folder, name a new one, carry that run on with "
                  f"trainer.resume={folder}, or start a copy with `cvrun reproduce {folder}`")
        raise UserError(f"{key}={folder} already holds a {what} ({held}); a {what} folder is claimed "
                        f"once, nothing in it is replaced: {advice}")
    raise UserError(f"{key}={folder} holds a {kind} ({held}); a {what} needs a folder of its own: leave "
                    f"{key} out for a new timestamped folder or name a new one")


class SweepFolder(Callback):
    """A sweep's folder and its jobs' folders, claimed like run folders, whatever the sweeper and launcher.

    When the multirun starts, in the process that runs the sweep: the sweep folder is locked until the
    command ends (end_launch), so that a second sweep there is refused naming the holder, and it must hold
    no run, nor (unless a search carries on in it) another sweep. Every job's folder then goes through the
    job_folder resolver, whatever sets hydra.sweep.subdir, and its name leaves out the settings that change
    no result. Launchers compose each job from hydra.overrides.hydra, in whatever process runs it: what is
    added there reaches every job.
    """

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        from cvrun.commands import stopping

        stopping(hold_sweep_folder, config)
        add_job_overrides(config)


def hold_sweep_folder(config: Any) -> None:
    from cvrun.io import FolderBusy, lock_for_launch, make_folder

    folder = Path(str(config.hydra.sweep.dir))
    if folder.exists() and not folder.is_dir():
        raise UserError(f"hydra.sweep.dir={folder} is a file; name a folder for the sweep")
    make_folder(folder)
    try:
        lock_for_launch(folder)
    except FolderBusy as busy:
        raise UserError(f"{folder} is in use: {busy} {activity(folder)} there; wait for it to end or name "
                        "another hydra.sweep.dir") from None
    resume = (config.get("hparams_search") or {}).get("resume")
    refuse_held_folder(folder, "hydra.sweep.dir", sweep=True, search_resume=resume not in (None, ""))


def add_job_overrides(config: Any) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf, read_write

    from cvrun.report.table import changes_no_result

    subdir = str(OmegaConf.to_container(config.hydra.sweep, resolve=False)["subdir"])
    added = [] if subdir.startswith("${job_folder:") else \
        ["hydra.sweep.subdir=" + quoted("${job_folder:" + quoted(subdir, "'") + "}", '"')]
    excluded = list(config.hydra.job.config.override_dirname.exclude_keys)
    given = [o.key_or_group for o in OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))]
    more = [k for k in dict.fromkeys([*given, *(config.hydra.sweeper.get("params") or {})])
            if changes_no_result(k) and k not in excluded]
    if more:
        added.append(f"hydra.job.config.override_dirname.exclude_keys=[{','.join(excluded + more)}]")
    with read_write(config.hydra.overrides):
        config.hydra.overrides.hydra.extend(added)


def quoted(text: str, quote: str) -> str:
    """`text` as a quoted string of Hydra's and OmegaConf's grammar: the quote escaped, and the backslashes
    before it or at the end (the only ones those grammars read as escapes) doubled."""
    text = re.sub(r"(\\*)" + quote, lambda m: m.group(1) * 2 + "\\" + quote, text)
    return quote + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text) + quote


def resume_args(args: list[str]) -> list[str] | None:
    """`cvrun train ... trainer.resume=RUN_DIR`: Hydra runs in RUN_DIR itself and leaves its .hydra record alone.

    None when the command resumes nothing. The run folder is locked here, before Hydra appends to its train.log.
    """
    from cvrun.parallel import is_main

    overrides = override_args(args) or []
    given = [o for o in overrides if key_of(o) == "trainer.resume"]
    if not given:
        return None
    folder = Path(override_value(given[-1])).expanduser()
    if "-m" in args or "--multirun" in args:
        raise UserError("trainer.resume carries on one run; drop -m")
    if not folder.is_dir():
        raise UserError(f"trainer.resume={folder}: no such run folder")
    if not (folder / "config.yaml").is_file():
        raise UserError(f"trainer.resume={folder} is not a run folder (no config.yaml in it)")
    changes = changed_settings(folder, [o for o in overrides if o not in given and key_of(o) not in RESUME_MAY_CHANGE])
    if changes:
        raise UserError(f"trainer.resume={folder} carries on the run as it was configured, but "
                        f"{'; '.join(changes)}; drop these overrides (only {', '.join(RESUME_MAY_CHANGE)} may "
                        "change), or start a changed copy with `cvrun reproduce RUN_DIR KEY=VALUE`")
    if is_main():
        lock_run_folder(folder)
    return with_overrides(args, [f"hydra.run.dir={hydra_quote(str(folder.resolve()))}", "hydra.output_subdir=null"])


def search_resume_args(args: list[str]) -> list[str] | None:
    """`cvrun train -m ... hparams_search.resume=SWEEP_DIR`: the search carries its study on in its own folder.

    None when the command resumes no search. The sweeper checks that the command searches what the study did.
    """
    from cvrun.io import lock_holder
    from cvrun.search.study import STUDY_FILES

    overrides = override_args(args) or []
    given = [o for o in overrides if key_of(o) == "hparams_search.resume"]
    if not given or override_value(given[-1]) in ("null", ""):
        return None
    folder = Path(override_value(given[-1])).expanduser()
    if "-m" not in args and "--multirun" not in args:
        raise UserError("hparams_search.resume carries on a search; add -m")
    if any(key_of(o) == "hydra.sweep.dir" for o in overrides):
        raise UserError("hparams_search.resume names the search's folder; drop hydra.sweep.dir")
    if not any((folder / name).is_file() for name in STUDY_FILES.values()):
        raise UserError(f"hparams_search.resume={folder} holds no Optuna study ({' or '.join(STUDY_FILES.values())}); "
                        "name the folder of a search started with cvrun train -m hparams_search=...")
    holder = lock_holder(folder)
    if holder is not None:
        raise UserError(f"{folder} is in use: {holder} runs the search there; wait for it to end")
    return with_overrides(args, [f"hydra.sweep.dir={hydra_quote(str(folder.resolve()))}"])


def changed_settings(folder: Path, overrides: list[str]) -> list[str]:
    """The settings `overrides` give a value other than the run's own, each as 'key is A in the run, B here'.

    An override of the run's own command (its .hydra/overrides.yaml) changes nothing. Any other is composed
    as `cvrun train` would compose it and compared on what it names: a key, a group's option (its
    `<group>.name`), or for a preset (experiment=...) every key the preset sets.
    """
    from cvrun.report.table import read_overrides

    recorded = set(read_overrides(folder))
    new = [o for o in overrides if o not in recorded and not key_of(o).startswith("hydra")]
    if not new:
        return []
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from cvrun.commands import register_schemas
    from cvrun.config import TrainConfig, absolute_paths, flatten, load_run_config, validate
    from cvrun.paths import config_dir

    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="train"):
        composed = [validate(compose("train", overrides=o), TrainConfig) for o in ([], overrides)]
    for typed in composed:
        absolute_paths(typed)
    default, given = (flatten(OmegaConf.to_container(c)) for c in composed)
    saved = flatten(OmegaConf.to_container(load_run_config(folder / "config.yaml")))
    compared = []
    for override in new:
        key = key_of(override)
        if (config_dir() / key).is_dir() and f"{key}.name" in given:  # a group option: is it the run's?
            compared.append(f"{key}.name")
        elif key in given:
            compared.append(key)
        else:  # a preset: every key it sets
            compared += [k for k in given if given[k] != default.get(k)]
    return [f"{k} is {saved.get(k)} in the run, {given[k]} here"
            for k in dict.fromkeys(compared) if given[k] != saved.get(k)]


def resumed_config(cfg: Any, run: Any) -> Any:
    """The config a resumed run carries on with: its own config.yaml, with trainer.resume set."""
    from omegaconf import OmegaConf

    from cvrun.config import load_run_config
    from cvrun.regimes import REGIMES

    typed = load_run_config(run.path / "config.yaml")
    where = f"trainer.resume={run.path}"
    summary = run.read_summary()
    if summary.get("status") == "completed":
        raise UserError(f"{where}: the run already completed (test_acc1 {summary.get('test_acc1')}); "
                        "there is nothing to carry on")
    reason = REGIMES.get(typed.regime.name).not_resumable
    if reason is not None:
        raise UserError(f"{where}: a {typed.regime.name} run cannot be resumed; {reason}")
    run.remove_partial_writes()
    typed.trainer.resume = str(run.path)
    for override in given_overrides():
        key = key_of(override)
        if key in RESUME_MAY_CHANGE:
            OmegaConf.update(typed, key, OmegaConf.select(cfg, key))
    return typed


def given_overrides() -> list[str]:
    """The overrides on the command line of this Hydra job, or of the composed config cvrun.api.train runs."""
    from hydra.core.hydra_config import HydraConfig

    composed = composed_overrides.get()
    if composed is not None:
        return composed
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def run_app() -> int:
    return run_hydra("train", train)
