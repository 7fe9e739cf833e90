"""Shared fixtures: tiny datasets in tmp dirs, configs without Hydra, the CLI in this process or a subprocess."""

from __future__ import annotations

import errno
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import cv2
import numpy as np
import pytest
from omegaconf import OmegaConf

from cvrun.commands import register_option_groups
from cvrun.config import TrainConfig, option_values, typed_option, validate

REPO = Path(__file__).resolve().parent.parent
SHARED_CIFAR10 = REPO.parent / "shared" / "data" / "cifar10"

# Configs are validated here without a command: the option groups' registries are made known as a command does.
register_option_groups()

needs_cifar10 = pytest.mark.skipif(not (SHARED_CIFAR10 / "train").is_dir(),
                                   reason="../shared/data/cifar10 is not present")
# CIFAR-10 as the tests read it: decoded once into the suite's disk cache, then memory-mapped by every test.
CIFAR10 = {"name": "cifar10", "root": str(SHARED_CIFAR10), "cache": "disk"}
CIFAR10_ARGS = ["dataset=cifar10", f"dataset.root={SHARED_CIFAR10}", "dataset.cache=disk"]


@pytest.fixture(scope="session", autouse=True)
def decoded_once(tmp_path_factory):
    """One disk cache (CVRUN_CACHE_DIR, inherited by the CLI subprocesses) for the whole suite."""
    previous = os.environ.get("CVRUN_CACHE_DIR")
    os.environ["CVRUN_CACHE_DIR"] = str(tmp_path_factory.mktemp("decoded"))
    yield
    if previous is None:
        del os.environ["CVRUN_CACHE_DIR"]
    else:
        os.environ["CVRUN_CACHE_DIR"] = previous


def make_cfg(**sections) -> object:
    """A validated TrainConfig with some sections' values replaced: make_cfg(trainer={"epochs": 2}).

    The schema's defaults are merged as plain values, so that an option's own keys (dataset.train_size of
    dataset=shapes) may be given; validate types each option section on its option's schema."""
    if isinstance(sections.get("aug"), str):
        sections["aug"] = option_values("aug", sections["aug"])
    defaults = OmegaConf.to_container(OmegaConf.structured(TrainConfig))
    return validate(OmegaConf.merge(defaults, sections), TrainConfig)


def aug_cfg(option: str, **values) -> object:
    """The `aug` section as `aug=<option>` composes it (its YAML over its schema), with values replaced."""
    return typed_option("aug", {**option_values("aug", option), **values})


def single(paths) -> Path:
    """The one path a glob found (a run folder, a sweep root); fails showing what was found otherwise."""
    found = list(paths)
    assert len(found) == 1, found
    return found[0]


def full_disk_for(monkeypatch, name: str) -> None:
    """Every write of a file whose name starts with `name` fails as on a full disk (when it is flushed)."""
    real_fsync = os.fsync

    def fsync(fd):
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(f".{name}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@contextmanager
def lock_held_elsewhere(folder: Path) -> Iterator[subprocess.Popen]:
    """Another process holding the training lock on `folder` (as a run being trained there does)."""
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from cvrun.io import lock_folder; "
                               "lock_folder(sys.argv[1]); print('locked', flush=True); time.sleep(60)", str(folder)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def cli(*args: str, cwd: Path) -> SimpleNamespace:
    """`cvrun ARGS` run in this process from `cwd` (no interpreter start-up): its exit status and output."""
    from cvrun.cli import main

    out, err = io.StringIO(), io.StringIO()
    previous, argv = os.getcwd(), sys.argv
    os.chdir(cwd)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(previous)
        sys.argv = argv
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def run_cli(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "cvrun", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def torchrun(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node=2 -m cvrun ARGS`. On failure the assertion shows what the ranks printed, not the
    launcher's own traceback, which follows it and would push it out of the message."""
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "cvrun", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    result.ranks_output = result.stderr.split("torch/distributed/elastic/multiprocessing/api.py")[0][-6000:]
    return result


def write_image_tree(root: Path, classes: dict[str, int], test_per_class: int = 3, size: int = 12,
                     grey: bool = False) -> Path:
    """train/<class>/*.png and test/<class>/*.png; each class has its own mean brightness."""
    rng = np.random.default_rng(0)
    for split, counts in (("train", classes), ("test", {c: test_per_class for c in classes})):
        for index, (name, count) in enumerate(counts.items()):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                shape = (size, size) if grey else (size, size, 3)
                image = np.clip(rng.normal(40 + 60 * index, 10, shape), 0, 255).astype(np.uint8)
                cv2.imwrite(str(folder / f"{i:04d}.png"), image)
    return root


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    return write_image_tree(tmp_path / "tree", {"cat": 10, "dog": 10, "frog": 10})


SHAPES = {"name": "shapes", "image_size": 32, "train_size": 1000, "test_size": 200, "std": [0.25, 0.25, 0.25]}


def train_run(path: Path, **sections) -> dict:
    """One run through `cvrun train`'s in-process path (validation, config.yaml, seeding, regime)."""
    from cvrun.commands.train import start_run
    from cvrun.engine.rundir import RunFolder

    trainer = {"epochs": 3, "batch_size": 32, "progress": False, "deterministic": True,
               **sections.pop("trainer", {})}
    dataset = sections.pop("dataset", {})
    if dataset.get("name", "shapes") == "shapes":  # shapes' own keys (train_size, test_size) go with shapes only
        dataset = {**SHAPES, **dataset}
    cfg = make_cfg(dataset=dataset, model={"name": "lenet5", **sections.pop("model", {})},
                   aug={"name": "none", "base": False}, trainer=trainer, **sections)
    return start_run(cfg, RunFolder(path))


@pytest.fixture(scope="session")
def source_run(tmp_path_factory) -> Path:
    """A lenet5 run folder trained on three of the five shapes: the pretrained source of transfer tests."""
    path = tmp_path_factory.mktemp("source") / "run"
    summary = train_run(path, dataset={"classes": ["circle", "ring", "square"]}, optim={"lr": 0.05},
                        trainer={"epochs": 10})
    assert summary["status"] == "completed" and summary["test_acc1"] > 50, summary  # chance 33
    return path


# Three CIFAR-10 classes: what the commands that use a trained model (predict, export) are tested on.
CIFAR10_THREE = {**CIFAR10, "classes": ["airplane", "frog", "truck"], "subset": 900}


@pytest.fixture(scope="session")
def cifar10_run(tmp_path_factory) -> Path:
    """LeNet-5 trained briefly on 900 images of three CIFAR-10 classes; tested on their 3,000 test images."""
    if not (SHARED_CIFAR10 / "train").is_dir():
        pytest.skip("../shared/data/cifar10 is not present")
    path = tmp_path_factory.mktemp("cifar10_run") / "run"
    summary = train_run(path, dataset=CIFAR10_THREE, optim={"lr": 0.05},
                        trainer={"epochs": 6})
    assert summary["status"] == "completed" and summary["test_acc1"] > 55, summary  # chance 33
    return path


def chromium() -> str | None:
    """Chromium from the system's packages (apt-get install chromium), or None."""
    import shutil

    return next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)


needs_chromium = pytest.mark.skipif(chromium() is None, reason="no Chromium (apt-get install chromium)")


def open_in_chromium(page: Path, tmp_path: Path) -> tuple[list[int], str]:
    """Open a page in headless Chromium: the natural width of each of its images once loaded (a script added
    to a copy of the page records them in the DOM Chromium dumps) and the browser's log."""
    import re

    probe = ("<script>window.addEventListener('load', () => { document.body.setAttribute('data-widths', "
             "Array.from(document.images).map(i => i.naturalWidth).join(',')); });</script>")
    probed = tmp_path / f"probed-{page.name}"
    probed.write_text(page.read_text().replace("</body>", probe + "</body>"))
    result = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                             "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
                            capture_output=True, text=True, timeout=120)
    found = re.search(r'data-widths="([\d,]*)"', result.stdout)
    assert found is not None, result.stderr[-2000:]
    return [int(w) for w in found.group(1).split(",") if w], result.stderr


def interrupt_after_epoch(monkeypatch, epoch: int) -> None:
    """Make the next run receive SIGTERM right after it saved last.pt for `epoch` (monkeypatch.undo() ends it)."""
    from cvrun.engine.runtime import Interrupted
    from cvrun.engine.trainer import _Loop

    save_last = _Loop.save_last

    def stop_after_epoch(self):
        save_last(self)
        if self.epoch_done == epoch:
            raise Interrupted("SIGTERM")
    monkeypatch.setattr(_Loop, "save_last", stop_after_epoch)


# Servers (TensorBoard, MLflow, optuna-dashboard) are started by the tests on a free loopback port.
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
