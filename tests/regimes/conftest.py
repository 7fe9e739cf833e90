"""What the regime tests share."""

from pathlib import Path

import pytest

from cvrun.engine.rundir import RunFolder
from cvrun.regimes import REGIMES
from tests.conftest import CIFAR10, make_cfg


def bare_regime(cfg, tmp_path: Path):
    """The regime of `cfg` without data or models (its step is called on tensors the test makes), inputs
    used as they come (no normalisation)."""
    regime = REGIMES.get(cfg.regime.name)(cfg, RunFolder(tmp_path / "bare", writes=False))
    regime.normalize = lambda images: images
    regime.mixer = None
    return regime


# A small real split for the semi-supervised regimes: 25 labels per class of three CIFAR-10 classes, the
# other 14,925 training images the pool, 600 steps of 16 labeled images; the labels-alone run takes the
# same steps with the same EMA, so what a regime adds over it comes from the pool. Measured over two
# seeds: labels alone 70.0 / 68.9, fixmatch 76.2 / 77.4, mean_teacher (lambda_u 10) 73.2 / 71.9.
SMALL_CIFAR10 = {**CIFAR10, "classes": ["airplane", "frog", "truck"], "labeled_per_class": 25, "val_fraction": 0.0}


def small_cifar10_run(path: Path, **sections) -> dict:
    from cvrun.commands.train import start_run

    trainer = {"epochs": 10, "steps_per_epoch": 60, "batch_size": 16, "ema_decay": 0.99, "progress": False,
               "deterministic": True, **sections.pop("trainer", {})}
    cfg = make_cfg(dataset=SMALL_CIFAR10, model={"name": "lenet5"}, optim={"lr": 0.03}, trainer=trainer, **sections)
    return start_run(cfg, RunFolder(path))


@pytest.fixture(scope="session")
def labels_alone(tmp_path_factory) -> dict:
    summary = small_cifar10_run(tmp_path_factory.mktemp("labels_alone") / "run")
    assert summary["status"] == "completed" and summary["test_acc1"] > 50, summary  # chance 33
    return summary
