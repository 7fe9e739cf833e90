"""`cvrun train`, `cvrun eval` and `cvrun info` as a user types them."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CIFAR10_ARGS, cli, needs_cifar10, single


def only_run(tmp_path: Path) -> Path:
    return single((tmp_path / "outputs").glob("*/*"))


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cli")
    result = cli("train", "dataset=shapes", "model=lenet5", "dataset.train_size=300", "trainer.epochs=2",
                     "trainer.progress=false", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return cwd, only_run(cwd)


def test_train_writes_the_designed_run_folder(shapes_run):
    _, run = shapes_run
    assert re.fullmatch(r"\d\d-\d\d-\d\d_scratch_lenet5", run.name)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", run.parent.name)
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml", "config.yaml",
                 "metrics.csv", "summary.json", "checkpoints/last.pt", "checkpoints/best.pt", "train.log",
                 "curves.png"):
        assert (run / name).is_file(), name
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    assert "epoch 2/2" in (run / "train.log").read_text()
    assert "name: lenet5" in (run / "config.yaml").read_text()


def test_eval_prints_the_test_accuracy_of_the_run(shapes_run):
    cwd, run = shapes_run
    summary = json.loads((run / "summary.json").read_text())
    result = cli("eval", str(run), cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert f"top-1 {summary['test_acc1']:.2f}%" in result.stdout
    assert f"({summary['test_samples']} images)" in result.stdout


def test_eval_shows_a_progress_bar_unless_progress_is_off(shapes_run, monkeypatch, capsys):
    from cvrun.cli import main
    from cvrun.engine import evaluate as evaluation

    cwd, run = shapes_run
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(evaluation, "PROGRESS_DELAY", 0.0)  # as if each batch took long
    for extra, shown in (([], True), (["progress=false"], False)):
        assert main(["eval", str(run), *extra]) == 0
        assert ("test:   0%|" in capsys.readouterr().err) == shown


def test_eval_of_a_folder_that_is_not_a_run(tmp_path):
    result = cli("eval", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and "is not a cvrun run folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_info_reports_size_cost_and_field(tmp_path):
    result = cli("info", "model=lenet5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "62,006" in result.stdout and "0.7 M per image" in result.stdout and "14 px" in result.stdout


@needs_cifar10
def test_lenet_learns_real_cifar10(tmp_path):
    result = cli("train", *CIFAR10_ARGS, "model=lenet5",
                     "dataset.subset=3000", "trainer.epochs=3", "trainer.batch_size=32", "optim.lr=0.05",
                     "trainer.progress=false",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((only_run(tmp_path) / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["test_samples"] == 10000
    assert summary["test_acc1"] > 25, summary  # chance is 10


def test_eval_follows_data_that_moved_when_told_where(tmp_path, monkeypatch, capsys):
    from cvrun.cli import main
    from tests.conftest import write_image_tree

    monkeypatch.chdir(tmp_path)
    tree = write_image_tree(tmp_path / "tree", {"cat": 6, "dog": 6})
    run = tmp_path / "run"
    assert main(["train", "dataset=imagefolder", f"dataset.root={tree}", "dataset.image_size=16", "model=lenet5",
                 "trainer.epochs=1", "trainer.progress=false", f"hydra.run.dir={run}"]) == 0
    tree.rename(tmp_path / "moved")
    assert main(["eval", str(run)]) == 2
    assert "set dataset.root" in capsys.readouterr().err
    assert main(["eval", str(run), f"dataset.root={tmp_path / 'moved'}"]) == 0
    assert "test: top-1" in capsys.readouterr().out


def test_help_into_a_closed_pipe_ends_quietly(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "cvrun", "--help"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # the reader is gone before cvrun writes, as `cvrun --help | head -0` leaves it
    assert process.wait(timeout=60) == 1
    assert process.stderr.read() == ""


@pytest.mark.parametrize("sweep", [False, True], ids=["run", "sweep"])
def test_a_read_only_current_folder_is_one_line_and_exit_1(sweep, tmp_path, monkeypatch):
    """Every folder made under the current one fails as on a read-only file system."""
    import errno
    import os

    make = os.mkdir

    def read_only(path, *args, **kwargs):
        if Path(path).absolute().is_relative_to(tmp_path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        make(path, *args, **kwargs)
    monkeypatch.setattr(os, "mkdir", read_only)
    result = cli("train", *(["-m"] if sweep else []), "dataset=shapes", "model=lenet5", cwd=tmp_path)
    line, = result.stderr.splitlines()
    folder = "multirun" if sweep else "outputs"
    assert result.returncode == 1 and line.startswith(f"cvrun: error: cannot write {folder}/")
    assert line.endswith(": Read-only file system (EROFS); start cvrun in a folder you can write to, or name one with "
                         "hydra.run.dir (hydra.sweep.dir with -m)")
