"""Datasets and DataLoaders: uint8 CHW batches; normalisation happens on the device.

Every sample comes with its own augmentation seed, drawn with the data order
from (trainer.seed, epoch) in the main process. So the images a run sees do
not depend on the number of workers, and a resumed run sees what an
uninterrupted one would have.

Images above 64 px (samples.Sizing): a training transform that draws its own
resized crop (its `crops_stored` is true: the base transform's
RandomResizedCrop) gets the image at its stored, aspect-true resolution and
the dataset's interpolation; any other transform, and evaluation, get the
centre crop evaluation sees.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cvrun.data.samples import Samples, Sizing
from cvrun.data.sampling import BalancedSampler
from cvrun import parallel

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]
Transforms = Union[Transform, tuple]


class ImageDataset(Dataset):
    """Items are (index, seed) pairs from SeededSampler; returns (uint8 CHW tensor, label). A tuple of
    transforms gives a tuple of views of the image (FixMatch's weak and strong).

    With `extras` ({name: tensor with one row per image}), the label becomes a dict of the label and each
    extra's row: what a regime keeps per image (LwF's recorded old-task outputs, pseudo-labels).
    """

    def __init__(self, samples: Samples, image_size: int, transform: Transforms | None = None,
                 extras: dict[str, torch.Tensor] | None = None):
        self.samples = samples
        self.image_size = image_size
        sizing = samples.sizing_for(image_size)
        self.transform = (tuple(for_sizing(view, sizing) for view in transform) if isinstance(transform, tuple)
                          else for_sizing(transform, sizing))
        self.extras = extras

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: tuple[int, int]) -> tuple[Any, Any]:
        index, seed = item
        rng = np.random.default_rng(seed)
        inputs = TransformInput(self.samples, index, self.image_size)
        if isinstance(self.transform, tuple):  # several views of the image, drawn in turn
            chw: Any = tuple(to_chw(inputs.through(view, rng)) for view in self.transform)
        else:
            chw = to_chw(inputs.through(self.transform, rng))
        label = int(self.samples.labels[index])
        if self.extras is None:
            return chw, label
        return chw, {"label": label, **{name: rows[index] for name, rows in self.extras.items()}}


def crops_stored(transform: Transform | None, sizing: Sizing) -> bool:
    """Whether `transform` draws its crop from the stored image (large images, a transform that says it does)."""
    return not sizing.small and bool(getattr(transform, "crops_stored", False))


def for_sizing(transform: Transform | None, sizing: Sizing) -> Transform | None:
    """`transform` resizing its crops with the dataset's interpolation, where it draws them from stored images."""
    return transform.with_interpolation(sizing.flag) if crops_stored(transform, sizing) else transform


class TransformInput:
    """One image of `samples` as a transform takes it: the stored image for one that crops it (large images),
    else the evaluation square; each decoded at most once."""

    def __init__(self, samples: Samples, index: int, size: int):
        self.samples, self.index, self.size = samples, index, size
        self.sizing = samples.sizing_for(size)
        self._stored: np.ndarray | None = None

    def stored(self) -> np.ndarray:
        if self._stored is None:
            self._stored = self.samples.stored(self.index, self.size)
        return self._stored

    def for_transform(self, transform: Transform | None) -> np.ndarray:
        stored = self.stored()
        return stored if crops_stored(transform, self.sizing) else self.sizing.evaluate(stored)

    def through(self, transform: Transform | None, rng: np.random.Generator) -> np.ndarray:
        image = self.for_transform(transform)
        return transform(image, rng) if transform is not None else image


def to_chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


class SeededSampler(Sampler):
    """Yields (index, augmentation seed); the order is shuffled per epoch when asked.

    shard: under torchrun, this process's share of the order (see parallel.shard);
    every rank draws the same order and seeds, so a run's images do not depend on N.
    """

    def __init__(self, size: int, seed: int, shuffle: bool, shard: bool = False):
        self.size, self.seed, self.shuffle, self.shard = size, seed, shuffle, shard
        self.epoch, self.repeat = 0, 0
        # Worked out once: DataLoader asks for the length at every step.
        self.length = len(parallel.shard(list(range(size)), pad=shuffle)) if shard else size

    def set_epoch(self, epoch: int, repeat: int = 0) -> None:
        """The order of `epoch`; `repeat` > 0: the repeat-th further pass within it (a loader that a regime
        draws from for more steps than it has batches)."""
        self.epoch, self.repeat = epoch, repeat

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch, self.repeat] if self.repeat else [self.seed, self.epoch])
        order = rng.permutation(self.size) if self.shuffle else np.arange(self.size)
        seeds = rng.integers(0, 2**63 - 1, self.size)
        pairs = list(zip(order.tolist(), seeds.tolist()))
        return iter(parallel.shard(pairs, pad=self.shuffle) if self.shard else pairs)


def auto_workers(samples: Samples, requested: int | None, augmented: bool, cuda: bool) -> int:
    """trainer.num_workers=null: worker processes where they pay.

    Decoding files wants workers. Images in memory are cheaper in the main process
    (measured: 50,000 CIFAR images with pad-crop-flip, 3.6 s an epoch with none
    against 6.2 s with one, on 2 cores), except when augmenting for a GPU, which
    would otherwise wait for every batch's augmentation.
    """
    if requested is not None:
        return requested
    if samples.images is not None and not (augmented and cuda):
        return 0
    return file_workers()


def file_workers() -> int:
    """Workers for decoding image files: every core but the main process's, at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def make_loader(samples: Samples, image_size: int, batch_size: int, *, train: bool, seed: int,
                transform: Transforms | None = None, num_workers: int | None = None,
                cuda: bool = False, extras: dict[str, torch.Tensor] | None = None, shard: bool = False,
                balanced: bool = False) -> DataLoader:
    """cuda: the batches go to a GPU (pinned memory, workers for augmentation).
    shard: under torchrun, this process's share of the images, in batches of batch_size / N.
    extras: per-image tensors that come with each label (see ImageDataset).
    balanced: draw the classes equally often (dataset.sampler=balanced; cvrun/data/sampling.py)."""
    workers = auto_workers(samples, num_workers, augmented=transform is not None, cuda=cuda)
    batch_size = batch_size // parallel.world_size() if shard else batch_size
    sampler = (BalancedSampler(samples.labels, seed, shard=shard) if balanced
               else SeededSampler(len(samples), seed, shuffle=train, shard=shard))
    return DataLoader(
        ImageDataset(samples, image_size, transform, extras),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        # No worker_init_fn calling cv2.setNumThreads: in a forked worker it deadlocks on the
        # thread pool inherited from a parent that already ran OpenCV in parallel.
        persistent_workers=workers > 0,
        pin_memory=cuda,
        prefetch_factor=4 if workers and cuda else None,
        # A last batch of one image breaks batch norm: drop the tail in training when it is one
        # image. Any larger tail trains; with few labels, dropping it would waste a real share.
        drop_last=train and len(sampler) % batch_size == 1,
        # Its own generator for the workers' base seed: iterating a loader leaves the global
        # random state (dropout, mixing) alone, so a resumed run draws what an uninterrupted one did.
        generator=torch.Generator().manual_seed(seed),
    )


class FeatureDataset(Dataset):
    """Precomputed feature vectors (cached feature extraction); items are SeededSampler's (index, seed)."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[item[0]], self.labels[item[0]]


def make_feature_loader(features: torch.Tensor, labels: torch.Tensor, batch_size: int, *, train: bool,
                        seed: int, balanced: bool = False) -> DataLoader:
    """Batches of cached features, in the same seeded order an image loader would use (sharded as it would be)."""
    sampler = (BalancedSampler(labels.numpy(), seed, shard=True) if balanced
               else SeededSampler(len(labels), seed, shuffle=train, shard=True))
    return DataLoader(FeatureDataset(features, labels), batch_size=batch_size // parallel.world_size(),
                      sampler=sampler,
                      generator=torch.Generator().manual_seed(seed))
