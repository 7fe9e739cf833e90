"""dataset.sampler=balanced: each epoch draws as many images as the training set has, every class equally likely.

An image of class c is drawn with probability 1 / (C x count_c) (with replacement), so a rare class's images
come round many times an epoch and a common class's some not at all. Images without a label (a distillation's
unlabeled pool) keep their share of the draws; the labeled ones share the rest equally by class.

Like SeededSampler (cvrun/data/loaders.py), the draws and each image's augmentation seed depend on
(trainer.seed, epoch, pass) alone: a resumed run draws what an uninterrupted one did, and every torchrun process
draws the same order, then takes its share.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

from cvrun import parallel


def balanced_probabilities(labels: np.ndarray) -> np.ndarray:
    """Each image's chance of a draw: the labeled images' share split equally over their classes, then equally
    over a class's images; an unlabeled image (label < 0) keeps 1 / n."""
    labels = np.asarray(labels)
    labeled = labels >= 0
    probabilities = np.full(len(labels), 1.0 / len(labels))
    if labeled.any():
        classes, index, counts = np.unique(labels[labeled], return_inverse=True, return_counts=True)
        share = labeled.mean()  # what the labeled images get together
        probabilities[labeled] = share / (len(classes) * counts[index])
    return probabilities / probabilities.sum()


class BalancedSampler(Sampler):
    """Yields (index, augmentation seed) pairs, len(labels) draws an epoch by balanced_probabilities.

    shard: under torchrun, this process's share of the draws (see parallel.shard)."""

    def __init__(self, labels: np.ndarray, seed: int, shard: bool = False):
        self.probabilities = balanced_probabilities(labels)
        self.size, self.seed, self.shard = len(labels), seed, shard
        self.epoch, self.repeat = 0, 0
        self.length = len(parallel.shard(list(range(self.size)), pad=True)) if shard else self.size

    def set_epoch(self, epoch: int, repeat: int = 0) -> None:
        """The draws of `epoch`; `repeat` > 0: the repeat-th further pass within it."""
        self.epoch, self.repeat = epoch, repeat

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[int, int]]:
        # Its own stream (the last entry), apart from SeededSampler's shuffles of the same epoch.
        rng = np.random.default_rng([self.seed, self.epoch, self.repeat, 0xBA1A])
        order = rng.choice(self.size, size=self.size, replace=True, p=self.probabilities)
        seeds = rng.integers(0, 2**63 - 1, self.size)
        pairs = list(zip(order.tolist(), seeds.tolist()))
        return iter(parallel.shard(pairs, pad=True) if self.shard else pairs)
