"""The search loop: ask the study for trials, run each as a sweep job, tell the study how it ended.

Why cvrun's own sweeper rather than hydra-optuna-sweeper: that plugin's releases require optuna < 3, its
pre-releases are a risk in a default install, and it has neither per-epoch reports (so no pruning) nor
a way to carry on a stopped study. This loop is Optuna's ask-and-tell interface around Hydra's launcher:

- a trial is sweep job number `trial.number`, so its run finds its trial from hydra.job.num and reports its
  trainer.monitor every epoch (study.TrialReport); a pruned run ends with status `pruned`; the study optimises
  each trial's best_<monitor> (best_val_acc1 by default), minimised for val_loss
- the study lives in the sweep folder; `hparams_search.resume=SWEEP_DIR` carries it on: completed, pruned
  and failed trials stay, an interrupted one (Ctrl-C, a killed job) runs again with its parameters
- a failed trial is told as failed and the search goes on, up to hparams_search.max_failures of them
- any Hydra launcher runs the jobs: hydra.sweeper.n_jobs trials at a time
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from cvrun.errors import UserError, require
from cvrun.io import StorageError
from cvrun.report.sweep import write_summary_csv
from cvrun.search.space import as_override, search_space
from cvrun.search.study import make_pruner, storage_kind, storage_url, study_storage

# A trial's record of how its run ended: a user attribute set before it is told.
STATUS_ATTR = "cvrun_status"
RETRY_ATTR = "retry_of"


class OptunaSearch:
    def __init__(self, settings: dict[str, Any], hydra_context: Any, task_function: Any, config: Any):
        from hydra.core.plugins import Plugins

        self.settings = settings
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)
        self.sweep_dir = Path(config.hydra.sweep.dir).absolute()
        self.storage_kind = storage_kind(settings["storage"], config.hydra.launcher._target_)
        self.failures = 0
        # What the study optimises: each trial's best_<monitor> (summary.json).
        self.monitor = str(config.trainer.get("monitor", "val_acc1"))

    def run(self, arguments: list[str]) -> None:
        """The search; a mistake in it (a resume of another search, no parameters) is one line and exit 2."""
        try:
            self.search(arguments)
        except UserError as err:
            print(f"cvrun: error: {err}", file=sys.stderr)
            raise SystemExit(err.exit_code) from None

    def search(self, arguments: list[str]) -> None:
        from omegaconf import OmegaConf

        from cvrun.config import SearchConfig, check_values

        search = OmegaConf.merge(OmegaConf.structured(SearchConfig), self.config.hparams_search)
        check_values(OmegaConf.create({"hparams_search": search}))
        self.direction = objective_direction(self.settings["direction"], self.monitor)
        require(self.settings["n_trials"] >= 1 and self.settings["n_jobs"] >= 1,
                "hydra.sweeper.n_trials and hydra.sweeper.n_jobs must be >= 1, got "
                f"{self.settings['n_trials']} and {self.settings['n_jobs']}")
        space, fixed = search_space(self.settings["params"], arguments)
        fixed = [o for o in fixed if not o.startswith("hparams_search.resume=")]
        if not space:
            raise UserError("an Optuna search needs parameters to search: set hydra.sweeper.params (an hparams_search "
                            "preset does) or give one as e.g. aug.m=range(0,31) or optim.lr='tag(log,interval(1e-3,1))'")
        # The sweep folder is cvrun's SweepFolder callback's: made and locked for the sweep's life.
        self.write_multirun_yaml()
        study = self.open_study(search, space, fixed)
        self.retry_interrupted(study)
        self.failures = sum(t.user_attrs.get(STATUS_ATTR) == "failed" for t in study.trials)
        self.run_trials(study, space, fixed, search.max_failures)
        self.report(study)

    def write_multirun_yaml(self) -> None:
        """Hydra's record of the sweep (its overrides and params name the swept keys); a resume keeps the first."""
        from omegaconf import OmegaConf

        from cvrun.io import atomic_write_bytes

        path = self.sweep_dir / "multirun.yaml"
        if not path.exists():
            atomic_write_bytes(path, OmegaConf.to_yaml(self.config).encode())

    def open_study(self, search: Any, space: dict[str, Any], fixed: list[str]) -> Any:
        """The study in the sweep folder, new or carried on; a resume must search what the study searched."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = study_storage(self.storage_kind, self.sweep_dir)
        study = optuna.create_study(
            storage=storage, study_name=self.settings["study_name"], sampler=self.settings["sampler"],
            pruner=make_pruner(search, self.config.trainer.epochs), direction=self.direction,
            load_if_exists=True)
        searched = {"space": {k: repr(d) for k, d in space.items()}, "fixed": sorted(fixed)}
        before = study.user_attrs.get("search")
        if before is None:
            study.set_user_attr("search", searched)
        elif before != searched:
            raise UserError(f"hparams_search.resume={self.sweep_dir}: this command differs from the search's "
                            f"({differences(before, searched)}); repeat the search's own command with "
                            "hparams_search.resume=SWEEP_DIR added (hydra.sweeper.n_trials may change)")
        return study

    def retry_interrupted(self, study: Any) -> None:
        """Trials a stop cut short (told interrupted, or left running by a killed sweeper) run again, once each."""
        from optuna.trial import TrialState

        retried = {t.user_attrs.get(RETRY_ATTR) for t in study.trials}
        for trial in study.trials:
            if trial.state == TrialState.RUNNING:
                study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            elif trial.state != TrialState.FAIL or trial.user_attrs.get(STATUS_ATTR) == "failed":
                continue
            if trial.number not in retried:
                study.enqueue_trial(trial.params, user_attrs={RETRY_ATTR: trial.number})
                print(f"cvrun: trial {trial.number} was interrupted; it runs again with its parameters")

    def run_trials(self, study: Any, space: dict[str, Any], fixed: list[str], max_failures: int) -> None:
        n_trials, n_jobs = self.settings["n_trials"], self.settings["n_jobs"]
        while (done := finished(study)) < n_trials:
            if self.failures > max_failures:
                print(f"cvrun: error: the search stopped after {self.failures} failed trials "
                      f"(hparams_search.max_failures={max_failures}); their reasons are in "
                      f"{self.sweep_dir / 'summary.csv'}", file=sys.stderr)
                return
            trials = [study.ask(space) for _ in range(min(n_jobs, n_trials - done))]
            self.launch(study, trials, fixed)

    def launch(self, study: Any, trials: list[Any], fixed: list[str]) -> None:
        """The trials as sweep jobs numbered by trial, so that each run finds its trial; then tell the study."""
        from optuna.trial import TrialState

        # Job numbers are consecutive within a launch: trials after a gap (a retried one) go in the next launch.
        size = next((i for i in range(1, len(trials)) if trials[i].number != trials[i - 1].number + 1), len(trials))
        batch, rest = trials[:size], trials[size:]
        jobs = [[*fixed, *(as_override(k, v) for k, v in trial.params.items())] for trial in batch]
        try:
            returns = self.launcher.launch(jobs, initial_job_idx=batch[0].number)
        except BaseException:  # Ctrl-C, SIGTERM: none of the batch is told yet; a resume retries them
            for trial in batch:
                trial.set_user_attr(STATUS_ATTR, "interrupted")
                study.tell(trial, state=TrialState.FAIL)
            with contextlib.suppress(StorageError):  # the interrupted trial's row (Hydra's job-end callback missed it)
                write_summary_csv(self.sweep_dir)
            numbers = ", ".join(str(trial.number) for trial in batch)
            print(f"cvrun: the search stopped during trial {numbers}; carry it on with the same command and "
                  f"{shlex.quote(f'hparams_search.resume={self.sweep_dir}')}", file=sys.stderr)
            raise
        for trial, job in zip(batch, returns):
            self.tell(study, trial, job)
        if rest:
            self.launch(study, rest, fixed)

    def tell(self, study: Any, trial: Any, job: Any) -> None:
        """Tell the study how a trial's run ended, as its summary.json records it."""
        from optuna.trial import TrialState

        summary_path = Path(job.hydra_cfg.hydra.runtime.output_dir) / "summary.json"
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, ValueError):
            summary = {}
        status, value = summary.get("status") or "failed", summary.get(f"best_{self.monitor}")
        if status == "completed" and value is None:  # every trial would end so: the search stops here
            trial.set_user_attr(STATUS_ATTR, "failed")
            study.tell(trial, state=TrialState.FAIL)
            from cvrun.config import MONITOR_NAMES

            raise UserError(f"trial {trial.number} has no {MONITOR_NAMES.get(self.monitor, self.monitor)} to optimise "
                            "(its run has no validation split): give the runs one (dataset.val_fraction > 0, or a val/ "
                            "folder beside test/)")
        trial.set_user_attr(STATUS_ATTR, status)
        if status == "completed":
            study.tell(trial, value)
        elif status == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
        else:
            if status == "failed":
                self.failures += 1
                trial.set_user_attr("reason", str(summary.get("reason"))[:500])
            study.tell(trial, state=TrialState.FAIL)

    def report(self, study: Any) -> None:
        from collections import Counter

        counts = Counter(t.user_attrs.get(STATUS_ATTR, "interrupted") for t in study.trials
                         if t.state.is_finished())
        told = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        url = storage_url(self.storage_kind, self.sweep_dir)
        print(f"study '{study.study_name}' ({told}) in {url}; to browse it: optuna-dashboard {url}")


def objective_direction(direction: str | None, monitor: str) -> str:
    """hydra.sweeper.direction, or (null) the one trainer.monitor wants; a direction against the monitor's is a
    mistake (a search would look for the worst trials)."""
    from cvrun.config import MONITORS

    require(direction in ("maximize", "minimize", None),
            f"hydra.sweeper.direction must be maximize or minimize, got {direction}")
    wanted = MONITORS.get(monitor, "maximize")
    require(direction in (None, wanted), f"hydra.sweeper.direction={direction} would search for the worst "
                                         f"trainer.monitor={monitor}; use hydra.sweeper.direction={wanted} or leave it out")
    return wanted


def finished(study: Any) -> int:
    """Trials that count towards n_trials: completed, pruned or failed (an interrupted one runs again)."""
    from optuna.trial import TrialState

    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) or
               (t.state == TrialState.FAIL and t.user_attrs.get(STATUS_ATTR) == "failed") for t in study.trials)


def differences(before: dict[str, Any], now: dict[str, Any]) -> str:
    """What a resuming command changes in a search: overrides and searched ranges, each as 'A there, B here'."""
    changes = [f"{key} {before['space'].get(key, 'not searched')} there, {now['space'].get(key, 'not searched')} here"
               for key in sorted(set(before["space"]) | set(now["space"]))
               if before["space"].get(key) != now["space"].get(key)]
    dropped = sorted(set(before["fixed"]) - set(now["fixed"]))
    added = sorted(set(now["fixed"]) - set(before["fixed"]))
    if dropped or added:
        changes.append(f"{' '.join(dropped) or 'nothing'} there, {' '.join(added) or 'nothing'} here")
    return "; ".join(changes)
