"""The regime contract, proved by a regime cvrun does not have: symmetric label noise, defined here.

It registers itself on import (pytest's, or CVRUN_PLUGINS=tests.regimes.test_contract in a CLI
process) and then trains through the one trainer like any other: a complete run folder, interrupted
and resumed to the same result, two processes under torchrun.
"""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace

import numpy as np
import pytest
from hydra.core.config_store import ConfigStore

from cvrun.errors import require
from cvrun.regimes import REGIMES, Regime, RegimeConfig
from tests.conftest import REPO, cli, torchrun


@dataclass
class LabelNoiseConfig(RegimeConfig):
    name: str = "label_noise"
    share: float = 0.2  # of the training labels replaced by another class, drawn uniformly

    def check(self) -> None:
        require(0 <= self.share < 1, f"regime.share must be in [0, 1), got {self.share}")


@REGIMES.register("label_noise")
class LabelNoise(Regime):
    """The standard run, on labels of which a seeded share is replaced by a uniformly drawn other class."""

    config = LabelNoiseConfig
    result_columns = ("noisy_labels",)

    def prepare(self) -> None:
        super().prepare()
        train, classes = self.data.train, self.data.num_classes
        rng = np.random.default_rng(self.cfg.dataset.split_seed)
        noisy = rng.random(len(train)) < self.cfg.regime.share
        labels = train.labels.copy()
        labels[noisy] = (labels[noisy] + rng.integers(1, classes, int(noisy.sum()))) % classes
        self.setup_loaders(replace(self.data, train=replace(train, labels=labels)))
        self.summary_extra["noisy_labels"] = int(noisy.sum())


# The option `regime=label_noise`, without a YAML file in cvrun's configs/.
ConfigStore.instance().store(group="regime", name="label_noise", node=LabelNoiseConfig)

RUN = ["regime=label_noise", "regime.share=0.2", "dataset=shapes", "dataset.train_size=800", "dataset.test_size=200",
       "model=lenet5", "optim.lr=0.05", "trainer.epochs=4", "trainer.batch_size=32", "trainer.deterministic=true",
       "trainer.progress=false"]
PLUGIN = {**os.environ, "PYTHONPATH": str(REPO), "CVRUN_PLUGINS": "tests.regimes.test_contract", "PYTHONUNBUFFERED": "1"}


def rows_without_timings(run):
    return [line.split(",")[:7] for line in (run / "metrics.csv").read_text().splitlines()]


def test_a_regime_of_ones_own_trains_through_the_trainer_and_resumes_exactly(tmp_path):
    whole = cli("train", *RUN, f"hydra.run.dir={tmp_path / 'whole'}", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    summary = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["test_acc1"] > 50, summary  # chance 20, 20% of labels wrong
    assert summary["noisy_labels"] > 100 and summary["result_columns"] == ["noisy_labels"]
    for name in ("config.yaml", "metrics.csv", "train.log", "curves.png", ".hydra/overrides.yaml",
                 "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (tmp_path / "whole" / name).is_file(), name
    foreign = cli("train", *RUN, "regime.k=3", cwd=tmp_path)
    assert foreign.returncode == 2 and "regime=label_noise takes share" in foreign.stderr

    cut = tmp_path / "cut"
    process = subprocess.Popen([sys.executable, "-m", "cvrun", "train", *RUN, f"hydra.run.dir={cut}"], cwd=tmp_path,
                               env=PLUGIN, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if (cut / "metrics.csv").exists() and len((cut / "metrics.csv").read_text().splitlines()) > 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130, process.stderr.read()
    assert json.loads((cut / "summary.json").read_text())["status"] == "interrupted"
    resumed = cli("train", *RUN, f"trainer.resume={cut}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert rows_without_timings(cut) == rows_without_timings(tmp_path / "whole")
    assert json.loads((cut / "summary.json").read_text())["test_acc1"] == summary["test_acc1"]


def test_a_regime_of_ones_own_runs_under_torchrun(tmp_path):
    """Two processes, each accumulating two half-batches (gradients reduced on the second only), train as one
    process does: one run folder written by rank 0, each test image counted once."""
    distributed = [*RUN, "dataset.test_size=201", "trainer.accumulate=2"]
    result = torchrun("train", *distributed, cwd=tmp_path, env=PLUGIN)
    assert result.returncode == 0, result.ranks_output
    runs = list((tmp_path / "outputs").glob("*/*"))
    assert len(runs) == 1, runs
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2 and summary["test_acc1"] > 35, summary  # chance 20
    assert summary["test_samples"] == 201  # 101 + 100: DistributedSampler-style padding would make 202
    assert (runs[0] / "train.log").read_text().count("run folder:") == 1  # one log, from rank 0
    one = cli("train", *distributed, f"hydra.run.dir={tmp_path / 'one'}", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    losses = [[float(line.split(",")[2]) for line in (run / "metrics.csv").read_text().splitlines()[1:]]
              for run in (runs[0], tmp_path / "one")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)  # LeNet-5 has no batch norm
