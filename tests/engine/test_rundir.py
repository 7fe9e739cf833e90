"""Run folders: unique per run, files replaced atomically so that a kill at any moment leaves a good version."""

import signal
import subprocess
import sys
import time

from cvrun.io import load_checkpoint
from cvrun.io import claim_folder, forget_claims


def test_claim_folder_never_hands_out_a_taken_folder(tmp_path):
    forget_claims()
    base = str(tmp_path / "outputs" / "10-00-00_scratch_lenet5")
    first = claim_folder(base)
    assert claim_folder(base) == first  # Hydra reads the setting again within one launch
    forget_claims()  # the next launch in the same second
    second = claim_folder(base)
    (tmp_path / "outputs" / "10-00-00_scratch_lenet5_3").mkdir()  # taken by another process
    forget_claims()
    fourth = claim_folder(base)
    assert [first.name, second.name, fourth.name] == [
        "10-00-00_scratch_lenet5", "10-00-00_scratch_lenet5_2", "10-00-00_scratch_lenet5_4"]
    forget_claims()


def test_three_runs_launched_at_once_leave_three_folders(tmp_path):
    args = [sys.executable, "-m", "cvrun", "train", "dataset=shapes", "dataset.train_size=60", "dataset.test_size=20",
            "model=lenet5", "trainer.epochs=1", "trainer.progress=false"]
    processes = [subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for _ in range(3)]
    assert [p.wait(timeout=300) for p in processes] == [0, 0, 0], [p.stderr.read() for p in processes]
    folders = sorted((tmp_path / "outputs").glob("*/*"))
    assert len(folders) == 3
    for folder in folders:
        assert (folder / "summary.json").is_file() and (folder / ".hydra" / "config.yaml").is_file()
        assert (folder / "train.log").read_text().count("run folder:") == 1


WRITER = """
import sys, torch
from pathlib import Path
from cvrun.io import save_checkpoint
path = Path(sys.argv[1])
for version in range(1000):
    save_checkpoint(path, {"model": {"w": torch.full((4_000_000,), float(version))}, "epoch": version})
    print(version, flush=True)
"""


def test_kill_9_in_the_middle_of_a_checkpoint_write_leaves_a_loadable_last_pt(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    writer.stdout.readline()  # the first version is complete
    caught_mid_write = False
    deadline = time.time() + 60
    while time.time() < deadline and not caught_mid_write:
        caught_mid_write = any(path.parent.glob(".last.pt.*.tmp"))  # a write is under way
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert caught_mid_write
    state = load_checkpoint(path)
    assert bool((state["model"]["w"] == state["epoch"]).all())  # one whole version, not a mix


def test_mlflow_and_matplotlib_notes_stay_off_the_console():
    """The lines they log at INFO (MLflow's database set-up, matplotlib's font cache) under a root logger at INFO,
    as Hydra's console and train.log are."""
    script = ("import logging; logging.basicConfig(level=logging.INFO); "
              "from cvrun.engine.rundir import use_cvrun_log_format; use_cvrun_log_format(); import mlflow; "
              "logging.getLogger('mlflow.store.db.utils').info('Creating initial MLflow database tables...'); "
              "logging.getLogger('matplotlib.font_manager').info('generated new fontManager'); "
              "logging.getLogger('cvrun').info('kept')")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "kept" in result.stderr and "MLflow" not in result.stderr and "fontManager" not in result.stderr
