"""One run with every logger, shared by the logger tests; servers started on a free loopback port."""

import csv
import json
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import cli

RUN = ["dataset=shapes", "dataset.train_size=300", "dataset.test_size=100", "model=lenet5", "trainer.epochs=3",
       "trainer.batch_size=32", "optim.lr=0.05", "trainer.progress=false", "trainer.log_every_n_steps=4",
       "logger=[csv,tensorboard,mlflow]"]


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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def server(command: list[str], ready_path: str, port: int, timeout: float = 60) -> Iterator[str]:
    """Start a server on 127.0.0.1:port, wait until `ready_path` answers, yield its base URL, stop it."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                urllib.request.urlopen(base + ready_path, timeout=2).read()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read()
                assert time.time() < deadline, "the server did not answer in time"
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def get_json(url: str, data: dict | None = None) -> dict:
    request = urllib.request.Request(url, data=None if data is None else json.dumps(data).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())
