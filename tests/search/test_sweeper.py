"""cvrun's Optuna search: trials as sweep jobs, per-epoch reports and pruning, resumable studies, a failure
budget, any launcher, and optuna-dashboard reading the study."""

import csv
import json
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from cvrun.search.study import STUDY_FILES, study_storage
from tests.conftest import cli, free_port, get_json, run_cli, server

SHAPES = ["dataset=shapes", "model=lenet5", "dataset.std=[0.25,0.25,0.25]", "aug=none", "trainer.batch_size=32",
          "trainer.progress=false",
          "trainer.num_workers=0"]
# A learning rate that learns (0.05) and one that stays at chance for these few epochs: the median pruner
# stops the second kind once one trial has finished.
PRUNED_SEARCH = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=6", "hydra.sweeper.sampler.seed=0",
                 "optim.lr=choice(0.0005,0.05)", "hparams_search.pruner=median", "hparams_search.pruner_startup_trials=1",
                 *SHAPES, "dataset.train_size=1000", "dataset.test_size=100", "trainer.epochs=4", "hydra.sweep.dir=sweep"]


def rows_of(sweep: Path) -> list[dict]:
    return list(csv.DictReader((sweep / "summary.csv").open()))


def study_of(sweep: Path, kind: str = "sqlite") -> optuna.Study:
    return optuna.load_study(study_name="cvrun", storage=study_storage(kind, sweep))


@pytest.fixture(scope="module")
def pruned_search(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("search")
    result = cli("train", *PRUNED_SEARCH, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result, cwd / "sweep"


def test_poor_trials_are_pruned_at_an_epoch_and_their_runs_say_so(pruned_search):
    result, sweep = pruned_search
    rows = rows_of(sweep)
    study = study_of(sweep)
    assert [r["job"] for r in rows] == [str(t.number) for t in study.trials] == ["0", "1", "2", "3", "4", "5"]
    states = {"completed": TrialState.COMPLETE, "pruned": TrialState.PRUNED}
    assert [states[r["status"]] for r in rows] == [t.state for t in study.trials]
    pruned = [r for r in rows if r["status"] == "pruned"]
    assert pruned and len(pruned) < len(rows)
    for row in pruned:
        summary = json.loads((Path(row["run_dir"]) / "summary.json").read_text())
        assert summary["status"] == "pruned" and summary["epochs_run"] < 4 and "test_acc1" not in summary
        assert summary["reason"].startswith(f"pruned by the median pruner after epoch {summary['epochs_run']} ")
    assert "6 trials" not in result.stderr and "sweep job(s) failed" not in result.stderr


def test_each_trial_reports_its_validation_top1_every_epoch(pruned_search):
    _, sweep = pruned_search
    for trial, row in zip(study_of(sweep).trials, rows_of(sweep)):
        metrics = list(csv.DictReader((Path(row["run_dir"]) / "metrics.csv").open()))
        assert trial.intermediate_values == {int(m["epoch"]): pytest.approx(float(m["val_acc1"])) for m in metrics}
        assert trial.params == {"optim.lr": float(row["optim.lr"])}


def test_best_json_names_the_best_trials_parameters_and_value_and_it_learned(pruned_search):
    result, sweep = pruned_search
    study = study_of(sweep)
    best = json.loads((sweep / "best.json").read_text())
    assert best["job"] == study.best_trial.number and best["best_val_acc1"] == study.best_value
    assert best["overrides"] == {"optim.lr": study.best_params["optim.lr"]}
    assert best["best_val_acc1"] > 50  # chance is 20 with five classes
    assert f"optuna-dashboard sqlite:///{sweep / 'optuna.db'}" in result.stdout


def test_summarize_lists_pruned_trials(pruned_search, tmp_path):
    _, sweep = pruned_search
    shown = cli("summarize", str(sweep), "--format", "csv", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    statuses = [r["status"] for r in csv.DictReader(shown.stdout.splitlines())]
    assert sorted(statuses) == sorted(r["status"] for r in rows_of(sweep)) and "pruned" in statuses


def test_optuna_dashboard_serves_the_finished_study(pruned_search):
    _, sweep = pruned_search
    port = free_port()
    command = [sys.executable, "-c", "from optuna_dashboard._cli import main; main()",
               f"sqlite:///{sweep / 'optuna.db'}", "--host", "127.0.0.1", "--port", str(port), "--quiet"]
    with server(command, "/api/studies", port) as base:
        studies = get_json(base + "/api/studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == ["cvrun"]
        trials = get_json(f"{base}/api/studies/{studies[0]['study_id']}")["trials"]
    assert len(trials) == len(rows_of(sweep)) == 6
    assert sorted(t["state"] for t in trials) == sorted(r["status"].replace("completed", "complete").title()
                                                         for r in rows_of(sweep))


SMALL_SEARCH = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.sampler.seed=1", "optim.lr=choice(0.01,0.05)", *SHAPES,
                "dataset.train_size=200", "dataset.test_size=50", "trainer.epochs=2"]


def test_a_resumed_search_keeps_finished_trials_and_retries_interrupted_ones(tmp_path, monkeypatch):
    from cvrun.engine.runtime import Interrupted
    from cvrun.engine.trainer import _Loop

    save_last, runs = _Loop.save_last, []

    def second_run_stopped(self):  # SIGTERM after the first epoch of the second trial
        save_last(self)
        if self.epoch_done == 0:
            runs.append(self)
        if len(runs) == 2 and self.epoch_done == 1:
            raise Interrupted("SIGTERM")
    monkeypatch.setattr(_Loop, "save_last", second_run_stopped)
    stopped = cli("train", *SMALL_SEARCH, "hydra.sweeper.n_trials=3", "hydra.sweep.dir=sweep", cwd=tmp_path)
    monkeypatch.undo()
    assert stopped.returncode == 130, stopped.stderr
    assert "the search stopped during trial 1; carry it on with the same command and hparams_search.resume=" \
        in stopped.stderr
    sweep = tmp_path / "sweep"
    study = study_of(sweep)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert [r["status"] for r in rows_of(sweep)] == ["completed", "interrupted"]
    first_summary = (Path(rows_of(sweep)[0]["run_dir"]) / "summary.json").read_text()
    # A sweeper killed outright leaves its trial running in the study: a resume retries that one too.
    left_running = study.ask({"optim.lr": optuna.distributions.CategoricalDistribution([0.01, 0.05])})

    resumed = cli("train", *SMALL_SEARCH, "hydra.sweeper.n_trials=4", "hparams_search.resume=sweep", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    trials = study_of(sweep).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL] + [TrialState.COMPLETE] * 3
    retried = {t.user_attrs.get("retry_of"): t for t in trials[3:]}
    assert set(retried) == {1, left_running.number, None}
    assert retried[1].params == trials[1].params and retried[2].params == left_running.params
    rows = rows_of(sweep)
    assert [r["status"] for r in rows] == ["completed", "interrupted", "completed", "completed", "completed"]
    assert (Path(rows[0]["run_dir"]) / "summary.json").read_text() == first_summary  # not run again
    assert "trial 1 was interrupted; it runs again" in resumed.stdout


def test_a_resume_must_repeat_the_searchs_command(tmp_path):
    first = cli("train", *SMALL_SEARCH, "hydra.sweeper.n_trials=1", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    changed = cli("train", *SMALL_SEARCH, "trainer.epochs=3", "hparams_search.resume=sweep", cwd=tmp_path)
    assert changed.returncode == 2
    assert "trainer.epochs=2 there, trainer.epochs=3 here" in changed.stderr and len(changed.stderr.splitlines()) == 1
    assert len(study_of(tmp_path / "sweep").trials) == 1
    nothing = cli("train", *SMALL_SEARCH, "hparams_search.resume=elsewhere", cwd=tmp_path)
    assert nothing.returncode == 2 and "holds no Optuna study" in nothing.stderr
    one_run = cli("train", "hparams_search.resume=sweep", cwd=tmp_path)
    assert one_run.returncode == 2 and "add -m" in one_run.stderr
    two_folders = cli("train", *SMALL_SEARCH, "hparams_search.resume=sweep", "hydra.sweep.dir=other", cwd=tmp_path)
    assert two_folders.returncode == 2 and "drop hydra.sweep.dir" in two_folders.stderr


def test_failed_trials_are_recorded_and_the_search_stops_past_its_failure_budget(tmp_path):
    result = cli("train", "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=6", "optim.lr=choice(0.01,0.05)",
                 "dataset=imagefolder", "dataset.root=/no/such/folder", "model=lenet5", "trainer.epochs=1",
                 "hparams_search.max_failures=1", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 1
    assert "the search stopped after 2 failed trials (hparams_search.max_failures=1)" in result.stderr
    rows = rows_of(tmp_path / "sweep")
    assert [r["status"] for r in rows] == ["failed", "failed"] and "/no/such/folder" in rows[0]["reason"]
    study = study_of(tmp_path / "sweep")
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2
    assert "/no/such/folder" in study.trials[0].user_attrs["reason"]


@pytest.mark.parametrize("launcher, storage, plugin", [
    ("local_parallel", "sqlite", "hydra_plugins.hydra_joblib_launcher"),
    ("submitit_local", "journal", "hydra_plugins.hydra_submitit_launcher")])
def test_trials_run_in_parallel_on_other_launchers_and_report_from_their_processes(launcher, storage, plugin, tmp_path):
    pytest.importorskip(plugin)
    # In a process of its own: the launchers pickle Hydra's context, which in this one holds the config node
    # of the regime tests/regimes/test_contract.py registers, a class the jobs' processes cannot import.
    result = run_cli("train", *SMALL_SEARCH, f"hydra/launcher={launcher}", "hydra.sweeper.n_trials=2",
                     "hydra.sweeper.n_jobs=2", f"hydra.sweeper.storage={storage}", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "sweep" / STUDY_FILES[storage]).is_file()
    study = study_of(tmp_path / "sweep", storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert all(sorted(t.intermediate_values) == [1, 2] for t in study.trials)
    assert [r["status"] for r in rows_of(tmp_path / "sweep")] == ["completed", "completed"]


def test_the_slurm_launcher_stores_the_study_in_a_journal_file():
    from cvrun.search.study import storage_kind

    assert storage_kind(None, "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher") == "journal"
    assert storage_kind(None, "hydra._internal.core_plugins.basic_launcher.BasicLauncher") == "sqlite"
    assert storage_kind("postgresql://db/optuna", "SlurmLauncher") == "postgresql://db/optuna"


def test_the_presets_compose(tmp_path):
    for preset, keys in (("randaug_optuna", ["aug.n: range(1, 4)", "aug.m: range(0, 31)", "n_trials: 12"]),
                         ("optim_optuna", ["optim.lr: tag(log, interval(0.001, 0.5))", "trainer.label_smoothing"])):
        shown = cli("train", f"hparams_search={preset}", "--cfg", "hydra", cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert "hydra_plugins.cvrun_optuna.OptunaSweeper" in shown.stdout and all(k in shown.stdout for k in keys)


def test_a_trial_of_two_tasks_is_pruned_on_both(tmp_path):
    """Trials as multi-task jobs (submitit's local executor, 2 tasks: one DDP run each): both tasks run Hydra's
    job as one run, recorded once; rank 0 reports and prunes, and the other task stops at the same epoch instead
    of waiting for it."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    args = [a for a in PRUNED_SEARCH if not a.startswith(("hydra.sweeper.n_trials=", "trainer.epochs="))]
    result = run_cli("train", *args, "hydra.sweeper.n_trials=2", "trainer.epochs=2", "hydra/launcher=submitit_local",
                     "hydra.launcher.tasks_per_node=2", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = rows_of(tmp_path / "sweep")
    assert [(r["optim.lr"], r["status"]) for r in rows] == [("0.05", "completed"), ("0.0005", "pruned")]
    completed = json.loads((Path(rows[0]["run_dir"]) / "summary.json").read_text())
    assert completed["world_size"] == 2 and completed["test_samples"] == 100  # each image tested once over the two
    assert (Path(rows[0]["run_dir"]) / "train.log").read_text().count("run folder:") == 1  # one log, from rank 0
    pruned = json.loads((Path(rows[1]["run_dir"]) / "summary.json").read_text())
    assert pruned["world_size"] == 2 and pruned["epochs_run"] == 1


def test_search_settings_on_a_grid_sweep_are_refused_before_any_job(tmp_path):
    result = cli("train", "-m", "model=lenet5,resnet20", "hparams_search.pruner=median", "dataset=shapes", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "hparams_search.pruner is a setting of an Optuna search, but this sweep runs on BasicSweeper" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and not any(tmp_path.iterdir())


def test_a_search_without_a_validation_split_stops_after_its_first_trial(tmp_path):
    result = cli("train", *SMALL_SEARCH, "hydra.sweeper.n_trials=4", "dataset.val_fraction=0", "hydra.sweep.dir=sweep",
                 cwd=tmp_path)
    assert result.returncode == 2
    assert "trial 0 has no validation top-1 to optimise" in result.stderr
    assert [t.state for t in study_of(tmp_path / "sweep").trials] == [TrialState.FAIL]


def test_a_wrong_direction_is_one_line(tmp_path):
    result = cli("train", *SMALL_SEARCH, "hydra.sweeper.direction=maximise", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip() == (
        "cvrun: error: hydra.sweeper.direction must be maximize or minimize, got maximise")


def test_a_search_refused_at_start_is_one_line_and_leaves_no_folder(tmp_path):
    result = cli("train", "-m", "hydra/sweeper=optuna", "optim.lr=interval(0.5,0.1)", "dataset=shapes", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr == ("cvrun: error: optim.lr=interval(0.5,0.1): the interval's "
                                                        "start is above its end; write interval(0.1, 0.5)\n")
    assert not any(tmp_path.iterdir())
