"""Shared fixtures: tiny datasets in tmp dirs, configs without Hydra, the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from omegaconf import OmegaConf

from cvrun.config import AugConfig, TrainConfig
from cvrun.paths import config_dir

REPO = Path(__file__).resolve().parent.parent
SHARED_CIFAR10 = REPO.parent / "shared" / "data" / "cifar10"

needs_cifar10 = pytest.mark.skipif(not (SHARED_CIFAR10 / "train").is_dir(),
                                   reason="../shared/data/cifar10 is not present")


def make_cfg(**sections) -> object:
    """A validated TrainConfig with some sections' values replaced: make_cfg(trainer={"epochs": 2})."""
    cfg = OmegaConf.structured(TrainConfig)
    return OmegaConf.merge(cfg, sections)


def aug_cfg(option: str, **values) -> object:
    """The `aug` section as `aug=<option>` composes it (its YAML over the schema), with values replaced."""
    return OmegaConf.merge(OmegaConf.structured(AugConfig), OmegaConf.load(config_dir() / "aug" / f"{option}.yaml"),
                           values)


def single(paths) -> Path:
    """The one path a glob found (a run folder, a sweep root); fails showing what was found otherwise."""
    found = list(paths)
    assert len(found) == 1, found
    return found[0]


def run_cli(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "cvrun", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


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
