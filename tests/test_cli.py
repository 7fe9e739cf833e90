"""The command line: dispatch, help, and one-line user errors with exit status 2."""

import subprocess
import sys
import time

import pytest

from cvrun.cli import COMMANDS, split_positional
from tests.conftest import cli


def test_help_lists_every_command_without_importing_torch():
    code = ("import sys; from cvrun.cli import main; main(['--help']); "
            "assert 'torch' not in sys.modules and 'hydra' not in sys.modules, 'heavy import'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert {"train", "eval", "reproduce", "summarize", "info", "preview", "inspect", "predict", "export"} <= set(COMMANDS)
    for command in COMMANDS:
        assert f"  {command} " in result.stdout


def best_seconds(command: list[str], runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        best = min(best, time.perf_counter() - started)
    return best


def test_help_costs_under_half_of_importing_torch():
    help_seconds = best_seconds([sys.executable, "-m", "cvrun", "--help"])
    torch_seconds = best_seconds([sys.executable, "-c", "import torch"])
    assert help_seconds < 0.5 * torch_seconds, (help_seconds, torch_seconds)


def test_train_help_is_hydras_with_every_group(tmp_path):
    result = cli("train", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for group in ("dataset:", "model:", "aug:", "regime:", "optim:", "sched:", "trainer:", "experiment:"):
        assert group in result.stdout
    assert "lenet5" in result.stdout and "wrn28_10" in result.stdout
    assert "aug: affine, autoaug, basic," in result.stdout and "_schema" not in result.stdout  # cvrun's internals


def test_positional_run_dir_becomes_an_override():
    assert split_positional(["outputs/a b", "split=val"], "run_dir") == ["run_dir='outputs/a b'", "split=val"]
    assert split_positional(["-m", "x=1"], None) == ["-m", "x=1"]


@pytest.mark.parametrize("root", ["/no/such/folder", "EMPTY"])
def test_missing_or_empty_imagefolder_root_is_one_line(root, tmp_path):
    if root == "EMPTY":
        (tmp_path / "empty").mkdir()
        root = str(tmp_path / "empty")
    result = cli("train", "dataset=imagefolder", f"dataset.root={root}", cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors[-1].startswith("cvrun: error: dataset root")
    assert "Traceback" not in result.stderr and len(errors) == 1
