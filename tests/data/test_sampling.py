"""dataset.sampler=balanced: classes drawn equally often, seeded by (seed, epoch), so a resume draws the same."""

import csv

import numpy as np
import pytest

from cvrun.data.loaders import make_loader
from cvrun.data.samples import Samples
from cvrun.data.sampling import BalancedSampler, balanced_probabilities

LONG_TAIL = np.array([0] * 800 + [1] * 150 + [2] * 50)


def drawn(sampler: BalancedSampler, epoch: int, repeat: int = 0) -> list[tuple[int, int]]:
    sampler.set_epoch(epoch, repeat)
    return list(sampler)


def test_an_epoch_draws_as_many_images_as_the_set_has_and_each_class_about_equally():
    pairs = drawn(BalancedSampler(LONG_TAIL, seed=0), epoch=0)
    assert len(pairs) == 1000
    counts = np.bincount(LONG_TAIL[[index for index, _ in pairs]], minlength=3)
    assert counts.sum() == 1000 and all(abs(count - 1000 / 3) < 60 for count in counts), counts  # about 5 sd
    assert len({seed for _, seed in pairs}) == 1000  # every draw its own augmentation seed
    # Each class's chance is exactly a third, spread equally over its images.
    probabilities = balanced_probabilities(LONG_TAIL)
    assert [probabilities[LONG_TAIL == c].sum() for c in range(3)] == pytest.approx([1 / 3] * 3)
    assert probabilities[0] == pytest.approx(1 / 2400) and probabilities[-1] == pytest.approx(1 / 150)


def test_images_without_a_label_keep_their_share_of_the_draws():
    probabilities = balanced_probabilities(np.array([0, 0, 0, 1, -1, -1]))
    assert probabilities[4:].tolist() == pytest.approx([1 / 6, 1 / 6])
    assert probabilities[:3].sum() == pytest.approx(probabilities[3]) == pytest.approx(1 / 3)


def test_the_draws_depend_on_seed_and_epoch_alone_so_a_resumed_run_draws_the_same():
    running = BalancedSampler(LONG_TAIL, seed=3)
    epochs = [drawn(running, epoch) for epoch in range(3)]
    resumed = BalancedSampler(LONG_TAIL, seed=3)  # a new process, starting at epoch 2
    assert drawn(resumed, 2) == epochs[2]
    assert epochs[0] != epochs[1] != epochs[2]
    assert drawn(resumed, 2, repeat=1) != epochs[2]  # a further pass within the epoch draws anew
    assert drawn(BalancedSampler(LONG_TAIL, seed=4), 2) != epochs[2]


def test_make_loader_draws_balanced_batches_when_asked():
    images = np.zeros((len(LONG_TAIL), 4, 4, 3), dtype=np.uint8)
    samples = Samples.from_arrays(images, LONG_TAIL)
    loader = make_loader(samples, 4, 100, train=True, seed=0, balanced=True, num_workers=0)
    assert isinstance(loader.sampler, BalancedSampler) and len(loader) == 10
    labels = np.concatenate([batch_labels.numpy() for _, batch_labels in loader])
    assert np.bincount(labels, minlength=3).min() > 250
    plain = make_loader(samples, 4, 100, train=True, seed=0, num_workers=0)
    assert not isinstance(plain.sampler, BalancedSampler)


def test_a_balanced_run_resumed_at_an_epoch_boundary_ends_as_an_uninterrupted_one(tmp_path, monkeypatch):
    from tests.conftest import interrupt_after_epoch, train_run

    balanced = {"dataset": {"train_size": 150, "test_size": 20, "imbalance_ratio": 10, "sampler": "balanced"}}
    whole = train_run(tmp_path / "whole", trainer={"epochs": 2}, **balanced)
    interrupt_after_epoch(monkeypatch, 1)
    with pytest.raises(SystemExit):
        train_run(tmp_path / "cut", trainer={"epochs": 2}, **balanced)
    monkeypatch.undo()
    resumed = train_run(tmp_path / "cut", trainer={"epochs": 2, "resume": str(tmp_path / "cut")}, **balanced)
    rows = [list(csv.DictReader((tmp_path / name / "metrics.csv").open())) for name in ("whole", "cut")]
    drop = ("epoch_seconds", "train_images_per_second")
    assert [{k: v for k, v in row.items() if k not in drop} for row in rows[1]] == \
           [{k: v for k, v in row.items() if k not in drop} for row in rows[0]]
    assert resumed["test_acc1"] == whole["test_acc1"] and resumed["test_macro_f1"] == whole["test_macro_f1"]
    assert whole["splits"]["train"]["per_class"]["triangle"] < whole["splits"]["train"]["per_class"]["circle"] / 5
