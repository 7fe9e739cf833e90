"""One run with every logger, shared by the logger tests."""

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import cli

RUN = ["dataset=shapes", "dataset.train_size=300", "dataset.test_size=100", "model=lenet5", "trainer.epochs=3",
       "trainer.batch_size=32", "optim.lr=0.05", "trainer.progress=false", "trainer.log_every_n_steps=4",
       "logger.mlflow.log_model=true", "logger=[csv,tensorboard,mlflow]"]


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("logged")
    result = cli("train", *RUN, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return next((cwd / "outputs").glob("*/*"))


def metrics_rows(run: Path) -> list[dict[str, float]]:
    return [{key: float(value) for key, value in row.items()} for row in csv.DictReader((run / "metrics.csv").open())]


def summary_of(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())
