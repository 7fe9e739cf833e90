"""Sweeps: the summary callback, failure isolation, and `cvrun summarize` over nested trees."""

import csv
import json
import shutil
from pathlib import Path

import pytest

from cvrun.commands.summarize import sort_rows, summarize
from cvrun.errors import UserError
from tests.conftest import CIFAR10_ARGS, cli, needs_cifar10, run_cli, single


def sweep_root(cwd: Path) -> Path:
    return single(p.parent for p in (cwd / "multirun").glob("*/*/multirun.yaml"))


@pytest.fixture(scope="module")
def failing_sweep(tmp_path_factory):
    """shapes at a good lr completes; at lr 1e6 it diverges; both jobs on a missing folder fail."""
    cwd = tmp_path_factory.mktemp("sweep")
    result = cli("train", "-m", "dataset=shapes,imagefolder", "dataset.root=/no/such/folder", "model=lenet5",
                     "dataset.subset=200", "trainer.epochs=2", "trainer.batch_size=32",
                     "optim.lr=0.01,1e6", "trainer.progress=false", cwd=cwd)
    return result, sweep_root(cwd)


def test_failed_jobs_are_recorded_and_the_others_still_run(failing_sweep):
    result, root = failing_sweep
    assert result.returncode == 1
    assert "3 sweep job(s) failed" in result.stderr and "Traceback" not in result.stderr
    rows = list(csv.DictReader((root / "summary.csv").open()))
    assert [r["job"] for r in rows] == ["0", "1", "2", "3"]
    assert [(r["dataset"], r["optim.lr"], r["status"]) for r in rows] == [
        ("shapes", "0.01", "completed"), ("shapes", "1000000.0", "failed"),
        ("imagefolder", "0.01", "failed"), ("imagefolder", "1000000.0", "failed")]
    assert "training loss became" in rows[1]["reason"]
    assert all("/no/such/folder" in r["reason"] for r in rows[2:])
    assert float(rows[0]["test_acc1"]) >= 0 and rows[0]["epochs_run"] == "2"
    assert all(Path(r["run_dir"]).is_dir() for r in rows)
    assert (root / "summary.png").stat().st_size > 5000


def test_summary_csv_columns_are_the_swept_keys_then_results(failing_sweep):
    _, root = failing_sweep
    header = (root / "summary.csv").read_text().splitlines()[0].split(",")
    assert header == ["job", "dataset", "optim.lr", "status", "reason", "best_val_acc1", "test_acc1", "test_acc5",
                      "epochs_run", "wall_seconds", "run_dir"]


def test_summarize_shows_the_sweep_with_its_differing_settings(failing_sweep, tmp_path):
    _, root = failing_sweep
    shown = cli("summarize", str(root), "--sort", "test_acc1", "--format", "csv", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    rows = list(csv.DictReader(shown.stdout.splitlines()))
    assert len(rows) == 4
    assert {"dataset.name", "optim.lr"} <= set(rows[0])
    assert rows[0]["status"] == "completed" and {r["status"] for r in rows[1:]} == {"failed"}


def write_run(folder: Path, config: str, **summary) -> None:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(config)
    (folder / "summary.json").write_text(json.dumps(summary))


def test_summarize_finds_nested_running_and_failed_runs(tmp_path):
    write_run(tmp_path / "2026-11-20" / "10-00-00_scratch_lenet5", "model:\n  name: lenet5\noptim:\n  lr: 0.1\n",
              status="completed", test_acc1=40.0)
    write_run(tmp_path / "2026-11-21" / "sweep" / "0_x", "model:\n  name: vgg11\noptim:\n  lr: 0.1\n",
              status="running")
    write_run(tmp_path / "2026-11-21" / "sweep" / "1_x" / "round_1", "model:\n  name: wrn28_2\noptim:\n  lr: 0.1\n",
              status="failed", reason="boom")
    table = summarize(tmp_path, sort="test_acc1", output_format="table").splitlines()
    assert table[0].split()[:3] == ["model.name", "status", "reason"]  # optim.lr is the same everywhere
    assert [line.split()[0] for line in table[1:]] == ["lenet5", "vgg11", "wrn28_2"]
    markdown = summarize(tmp_path, sort=None, output_format="md")
    assert markdown.count("\n") == 5 and "| wrn28_2 | failed | boom |" in markdown


def test_mean_over_seeds_merges_the_runs_that_differ_only_in_their_seed(tmp_path):
    for lambda_old, seed, old_task, status in [(0, 0, 50.0, "completed"), (0, 1, 40.0, "completed"),
                                               (0, 10, 45.0, "completed"), (1, 0, 52.0, "completed"),
                                               (1, 1, 53.0, "completed"), (1, 2, None, "failed")]:
        write_run(tmp_path / f"{lambda_old}-{seed}", f"regime:\n  lambda_old: {lambda_old}\ntrainer:\n  seed: {seed}\n",
                  status=status, test_acc1=None if old_task is None else 40.0 + seed, old_task_acc1=old_task,
                  result_columns=["old_task_acc1"])
    rows = list(csv.DictReader(summarize(tmp_path, "old_task_acc1", "csv", seed_means=True).splitlines()))
    assert [(r["regime.lambda_old"], r["runs"], r["completed"], r["seeds"]) for r in rows] == [
        ("1", "3", "2", "0 1"), ("0", "3", "3", "0 1 10")]
    assert (rows[0]["old_task_acc1"], rows[0]["old_task_acc1_sd"]) == ("52.5", "0.71")
    assert (rows[1]["old_task_acc1"], rows[1]["old_task_acc1_sd"]) == ("45.0", "5.0")
    assert rows[1]["test_acc1"] == "43.67" and "trainer.seed" not in rows[0]
    plain = list(csv.DictReader(summarize(tmp_path, None, "csv").splitlines()))
    assert len(plain) == 6 and plain[0]["old_task_acc1"] == "50.0"  # a regime's result gets its column


def test_summarize_mistakes(tmp_path):
    with pytest.raises(UserError, match="no runs under"):
        summarize(tmp_path, None, "table")
    with pytest.raises(UserError, match="is not a folder"):
        summarize(tmp_path / "nope", None, "table")
    result = cli("summarize", str(tmp_path), "--format", "xml", cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_sort_puts_numbers_best_first_and_missing_last():
    rows = [{"a": 1.0}, {"a": None}, {"a": 3.0}]
    assert [r["a"] for r in sort_rows(rows, "a")] == [3.0, 1.0, None]


@needs_cifar10
def test_cifar10_sweep_from_the_issue(tmp_path):
    result = cli("train", "-m", *CIFAR10_ARGS, "model=lenet5",
                     "dataset.subset=200", "trainer.epochs=1", "aug=none,basic", "trainer.progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((sweep_root(tmp_path) / "summary.csv").open()))
    assert [(r["aug"], r["status"]) for r in rows] == [("none", "completed"), ("basic", "completed")]


def test_randaugment_grid_search_names_the_best_pair(tmp_path):
    grid = cli("train", "hparams_search=randaug_grid", "--cfg", "hydra", cwd=tmp_path)
    assert grid.returncode == 0, grid.stderr
    assert "aug.n: 1,2,3" in grid.stdout and "aug.m: 5,9,14,19" in grid.stdout
    # The same search on a smaller grid (command-line values take precedence over the sweeper's params).
    result = cli("train", "-m", "hparams_search=randaug_grid", "aug.n=1,2", "aug.m=9", "dataset=shapes",
                     "model=lenet5", "dataset.train_size=200", "dataset.test_size=50", "trainer.epochs=1",
                     "trainer.progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    root = sweep_root(tmp_path)
    rows = list(csv.DictReader((root / "summary.csv").open()))
    assert [(r["aug.n"], r["aug.m"]) for r in rows] == [("1", "9"), ("2", "9")]
    best = json.loads((root / "best.json").read_text())
    best_row = max(rows, key=lambda r: float(r["best_val_acc1"]))
    assert best["overrides"] == {"aug.n": int(best_row["aug.n"]), "aug.m": 9}
    assert "best of 2 jobs by the validation top-1: aug.n=" in result.stdout


@pytest.mark.parametrize("launcher, plugin", [("submitit_local", "hydra_plugins.hydra_submitit_launcher"),
                                              ("local_parallel", "hydra_plugins.hydra_joblib_launcher")])
def test_other_launchers_keep_the_summary_and_the_failure_status(launcher, plugin, tmp_path):
    pytest.importorskip(plugin)
    result = run_cli("train", "-m", f"hydra/launcher={launcher}", "dataset=shapes,imagefolder",
                     "dataset.root=/no/such/folder", "model=lenet5", "dataset.subset=200",
                     "trainer.epochs=1", "trainer.progress=false", cwd=tmp_path)
    assert result.returncode == 1 and "1 sweep job(s) failed" in result.stderr, result.stderr
    rows = list(csv.DictReader((sweep_root(tmp_path) / "summary.csv").open()))
    assert [(r["dataset"], r["status"]) for r in rows] == [("shapes", "completed"), ("imagefolder", "failed")]


def test_slurm_recipe_composes_onto_submitit(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    result = cli("train", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "--cfg", "hydra",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "SlurmLauncher" in result.stdout and "partition: gpu" in result.stdout and "gpus_per_node: 1" in result.stdout


def test_optuna_search_reports_trials_like_any_sweep(tmp_path):
    result = cli("train", "-m", "hparams_search=randaug_optuna", "hydra.sweeper.n_trials=2", "dataset=shapes",
                 "model=lenet5", "dataset.train_size=200", "dataset.test_size=50", "trainer.epochs=1",
                 "trainer.progress=false", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    header = (tmp_path / "sweep" / "summary.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["job", "aug.n", "aug.m"] and header[3] == "status"
    assert (tmp_path / "sweep" / "summary.png").is_file() and (tmp_path / "sweep" / "optuna.db").is_file()
    assert set(json.loads((tmp_path / "sweep" / "best.json").read_text())["overrides"]) == {"aug.n", "aug.m"}


def test_a_sweep_job_folder_works_wherever_a_path_goes(failing_sweep, tmp_path, monkeypatch, capsys):
    """Job folders hold '=' and ',' (0_dataset=shapes,optim.lr=0.01): every command takes them as typed."""
    from cvrun.cli import main

    _, root = failing_sweep
    job = single(root.glob("0_*"))
    assert "=" in job.name and "," in job.name
    monkeypatch.chdir(tmp_path)
    assert main(["eval", str(job)]) == 0
    assert main(["reproduce", str(job), "trainer.epochs=1"]) == 0
    common = ["dataset=shapes", "dataset.train_size=200", "dataset.test_size=50", "model=lenet5", "trainer.epochs=1",
              "trainer.progress=false"]
    assert main(["train", *common, "regime=finetune", f"model.pretrained={job}"]) == 0
    assert main(["train", *common, "regime=distill", f"regime.teacher={job}"]) == 0
    stopped = tmp_path / "copy" / job.name
    shutil.copytree(job, stopped)
    summary = json.loads((stopped / "summary.json").read_text())
    (stopped / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    assert main(["train", f"trainer.resume={stopped}"]) == 0
    assert json.loads((stopped / "summary.json").read_text())["status"] == "completed"
    assert "Lexer" not in capsys.readouterr().err


def test_long_sweep_job_names_are_shortened_to_what_the_file_system_takes(tmp_path, monkeypatch):
    from cvrun.cli import main

    monkeypatch.chdir(tmp_path)
    keys = ["dataset.split_seed=3", "optim.momentum=0.8", "optim.weight_decay=0.0001", "trainer.label_smoothing=0.1",
            "trainer.seed=5", "trainer.num_workers=0", "sched.min_lr=0.0", "dataset.classes=[circle,ring,square]"]
    assert main(["train", "-m", "dataset=shapes", "dataset.train_size=60", "dataset.test_size=20", "model=lenet5",
                 "trainer.epochs=1", "trainer.progress=false", "aug=none", *keys, "optim.lr=0.01,0.02"]) == 0
    jobs = sorted(p for p in sweep_root(tmp_path).iterdir() if p.is_dir())
    assert len(jobs) == 2 and all(len(job.name.encode()) <= 200 for job in jobs), jobs
    assert jobs[0].name.startswith("0_aug=none,dataset.classes=") and "~" in jobs[0].name


def test_summarize_marks_runs_it_cannot_read_and_shows_the_rest(tmp_path, capsys):
    write_run(tmp_path / "good", "model:\n  name: lenet5\n", status="completed", test_acc1=40.0)
    write_run(tmp_path / "bad_config", "model: [lenet5\n", status="completed", test_acc1=41.0)
    write_run(tmp_path / "bad_summary", "model:\n  name: vgg11\n")
    (tmp_path / "bad_summary" / "summary.json").write_text("{\"status\": ")
    from cvrun.cli import main

    assert main(["summarize", str(tmp_path), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    rows = {r["run_dir"]: r for r in csv.DictReader(out.splitlines())}
    assert rows["good"]["status"] == "completed" and rows["good"]["model.name"] == "lenet5"
    assert rows["bad_config"]["status"] == "unreadable" and "config.yaml is unreadable" in rows["bad_config"]["reason"]
    assert rows["bad_summary"]["status"] == "unreadable" and "summary.json is unreadable" in rows["bad_summary"]["reason"]
    warnings = err.strip().splitlines()
    assert len(warnings) == 2 and all(w.startswith("cvrun: warning: ") and "marked unreadable" in w for w in warnings)


def test_a_sweep_summary_that_cannot_be_written_is_one_line_each_and_exit_1(tmp_path, monkeypatch, capsys):
    from cvrun.cli import main
    from tests.conftest import full_disk_for

    monkeypatch.chdir(tmp_path)
    full_disk_for(monkeypatch, "summary.csv")
    assert main(["train", "-m", "dataset=shapes", "dataset.train_size=60", "dataset.test_size=20", "model=lenet5",
                 "trainer.epochs=1", "trainer.progress=false"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert errors and all(line.startswith("cvrun: error: cannot write ") and "summary.csv: No space" in line
                          for line in errors), errors
    root = sweep_root(tmp_path)
    assert (root / "summary.png").is_file() is False and (root / "jobs.jsonl").is_file()


def test_the_best_job_is_chosen_by_the_jobs_monitor():
    """A sweep of runs that watch the validation macro-F1 (an imbalanced set) or loss names the best by it, not
    by the top-1; runs that watched different monitors fall back to the top-1."""
    from cvrun.report.sweep import pick_best
    from cvrun.report.table import result_columns

    def row(job, monitor, acc1, f1, loss):
        return {"job": job, "optim.lr": job, "status": "completed", "monitor": monitor, "best_val_acc1": acc1,
                "best_val_macro_f1": f1, "best_val_loss": loss, "test_acc1": 50.0, "run_dir": f"r{job}"}

    rows = [row(0, "val_macro_f1", 70.0, 30.0, 1.0), row(1, "val_macro_f1", 60.0, 45.0, 1.2)]
    assert pick_best(rows, ["optim.lr"])["job"] == 1
    assert "best_val_macro_f1" in pick_best(rows, ["optim.lr"])
    assert "test_macro_f1" in result_columns(rows)
    rows = [row(0, "val_loss", 70.0, 30.0, 1.0), row(1, "val_loss", 60.0, 45.0, 0.9)]
    assert pick_best(rows, ["optim.lr"])["job"] == 1  # lower is better
    rows = [row(0, "val_loss", 70.0, 30.0, 1.0), row(1, "val_macro_f1", 60.0, 45.0, 0.9)]
    assert pick_best(rows, ["optim.lr"])["monitor"] == "val_acc1" and pick_best(rows, ["optim.lr"])["job"] == 0
    assert "test_macro_f1" not in result_columns([row(0, "val_acc1", 70.0, 30.0, 1.0)])


def test_a_search_is_plotted_one_bar_per_trial_in_order(tmp_path, monkeypatch):
    """Many distinct values (a search's draws) would need a colour each: summary.png shows the trials in order."""
    from cvrun.report import sweep

    figures = []
    monkeypatch.setattr(sweep, "save_png", lambda figure, path, **_: figures.append(figure))
    rows = [{"job": n, "optim.lr": 0.01 * (n + 1) + 1e-9, "status": "pruned" if n % 3 == 2 else "completed",
             "test_acc1": None if n % 3 == 2 else 40.0 + n, "best_val_acc1": 30.0 + n} for n in range(12)]
    sweep.plot_sweep(rows, ["optim.lr"], tmp_path / "summary.png")
    axis = figures[0].axes[0]
    assert [t.get_text() for t in axis.get_xticklabels()][:3] == ["0: lr=0.01", "1: lr=0.02", "2: lr=0.03"]
    assert len(axis.patches) == 8  # a bar per completed trial
    assert [t.get_text() for t in axis.texts].count("pruned") == 4
    best_line = next(line for line in axis.lines if line.get_label() == "best validation top-1 so far")
    assert list(best_line.get_ydata()[:4]) == [30.0, 31.0, 31.0, 33.0]  # of the completed trials


SMALL = ["dataset=shapes", "dataset.train_size=100", "dataset.test_size=20", "model=lenet5", "trainer.epochs=1",
         "trainer.progress=false"]


def test_jobs_that_name_one_folder_get_one_each(tmp_path):
    """Hydra's idiom names both jobs' folders after the overrides, which leave dataset.root out: one name."""
    result = cli("train", "-m", *SMALL, "dataset.root=a,b", "hydra.sweep.subdir=${hydra.job.override_dirname}",
                 "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "sweep" / "summary.csv").open()))
    assert rows[1]["run_dir"] == rows[0]["run_dir"] + "_2"
    assert "is taken (another job of the sweep has it); this job runs in" in result.stdout + result.stderr
    for row in rows:  # each folder holds its own job's run
        assert f"root: {tmp_path / row['dataset.root']}\n" in (Path(row["run_dir"]) / "config.yaml").read_text()
        assert json.loads((Path(row["run_dir"]) / "summary.json").read_text())["status"] == "completed"
    best = json.loads((tmp_path / "sweep" / "best.json").read_text())
    best_config = (Path(best["run_dir"]) / "config.yaml").read_text()
    assert f"root: {tmp_path / best['overrides']['dataset.root']}\n" in best_config


@pytest.mark.parametrize("sweeper", [[], ["hydra/sweeper=optuna", "hydra.sweeper.n_trials=1",
                                          "optim.lr=interval(0.01,0.1)"]], ids=["grid", "optuna"])
def test_a_sweep_holds_its_folder_for_its_whole_life(sweeper, tmp_path, monkeypatch):
    """A second sweep into the folder of one that runs is refused naming it, on either sweeper."""
    import os
    import socket

    from cvrun.commands import train as train_command
    from cvrun.io import lock_holder

    sweep = tmp_path / "sweep"
    second = []

    def job(cfg, run, sweep_dir=None):  # while the first sweep's job runs
        second.append(run_cli("train", "-m", "dataset=shapes", f"hydra.sweep.dir={sweep}", cwd=tmp_path))
        run.update_summary(status="completed", best_val_acc1=50.0)
        return run.read_summary()
    monkeypatch.setattr(train_command, "start_run", job)
    first = cli("train", "-m", "dataset=shapes", *sweeper, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    refused, = second
    assert refused.returncode == 2 and refused.stderr.splitlines()[-1] == (
        f"cvrun: error: {sweep} is in use: pid {os.getpid()} on {socket.gethostname()} runs a sweep there; wait for "
        "it to end or name another hydra.sweep.dir"), refused.stderr
    assert len((sweep / "jobs.jsonl").read_text().splitlines()) == 1 and lock_holder(sweep) is None
