"""From a source to the splits a run uses: classes, subset, labeled pool, validation.

Order: keep `dataset.classes` -> stratified `dataset.subset` of the training
images -> `dataset.labeled_per_class` labeled images per class (the rest form
the unlabeled pool, labels hidden) -> `dataset.val_fraction` of the labeled
images held out for validation. All draws are stratified and seeded by
`dataset.split_seed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cvrun.data import cache
from cvrun.data.samples import HIDDEN, Samples, list_images
from cvrun.data.sources import Source, load_source
from cvrun.errors import UserError


@dataclass
class DataSplits:
    class_names: list[str]
    image_size: int
    train: Samples
    val: Samples | None
    test: Samples
    unlabeled: Samples | None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def keep_classes(samples: Samples, class_names: list[str], keep: list[str]) -> Samples:
    """Only images of `keep`, relabelled 0..len(keep)-1 in the order given."""
    index = {name: i for i, name in enumerate(class_names)}
    mapping = np.full(len(class_names), -1, dtype=np.int64)
    for new, name in enumerate(keep):
        mapping[index[name]] = new
    chosen = samples.take(np.flatnonzero(mapping[samples.true_labels] >= 0))
    chosen.labels = mapping[chosen.labels]
    chosen.true_labels = mapping[chosen.true_labels]
    return chosen


def per_class_counts(labels: np.ndarray, total: int) -> dict[int, int]:
    """Split `total` over the classes in proportion to their sizes (largest remainder)."""
    classes, sizes = np.unique(labels, return_counts=True)
    exact = sizes * total / sizes.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts))[: total - counts.sum()]:
        counts[i] += 1
    return dict(zip(classes.tolist(), np.minimum(counts, sizes).tolist()))


def stratified_pick(labels: np.ndarray, counts: dict[int, int], rng: np.random.Generator) -> np.ndarray:
    """Indices of counts[c] random images of each class c (sorted)."""
    picked = [rng.permutation(np.flatnonzero(labels == c))[:n] for c, n in counts.items()]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def _complement(n: int, indices: np.ndarray) -> np.ndarray:
    mask = np.ones(n, dtype=bool)
    mask[indices] = False
    return np.flatnonzero(mask)


def build_splits(cfg: Any) -> DataSplits:
    source = load_source(cfg)
    if cfg.cache == "disk":
        folder = Path(cfg.cache_dir) if cfg.cache_dir else cache.default_cache_dir()
        source = Source(source.class_names,
                        cache.on_disk(source.train, cfg.image_size, folder, f"{cfg.name}-train"),
                        cache.on_disk(source.test, cfg.image_size, folder, f"{cfg.name}-test"))
    class_names, train, test = source.class_names, source.train, source.test
    rng = np.random.default_rng(cfg.split_seed)
    if cfg.classes:
        unknown = [name for name in cfg.classes if name not in class_names]
        if unknown:
            raise UserError(f"dataset.classes: unknown class {', '.join(map(str, unknown))}; "
                            f"classes of {cfg.name}: {', '.join(class_names)}")
        keep = [str(name) for name in cfg.classes]
        train, test = keep_classes(train, class_names, keep), keep_classes(test, class_names, keep)
        class_names = keep
    if cfg.subset is not None and cfg.subset < len(train):
        train = train.take(stratified_pick(train.labels, per_class_counts(train.labels, cfg.subset), rng))
    unlabeled = None
    if cfg.labeled_per_class is not None:
        labeled = stratified_pick(train.labels, {c: cfg.labeled_per_class for c in np.unique(train.labels)}, rng)
        unlabeled = train.take(_complement(len(train), labeled)).hide_labels()
        train = train.take(labeled)
    val = None
    if cfg.val_fraction > 0:
        held = stratified_pick(train.labels, per_class_counts(train.labels, round(cfg.val_fraction * len(train))), rng)
        val, train = train.take(held), train.take(_complement(len(train), held))
    if cfg.unlabeled_root:
        extra = unlabeled_folder(Path(cfg.unlabeled_root).expanduser())
        unlabeled = extra if unlabeled is None else Samples.concat(unlabeled, extra, cfg.image_size)
    if len(train) == 0:
        raise UserError(f"no training images left after the split settings of dataset {cfg.name}; "
                        "raise dataset.subset or dataset.labeled_per_class, or lower dataset.val_fraction")
    splits = [train, val, test, unlabeled]
    if cfg.cache == "ram" or (cfg.cache == "auto" and cache.fits_in_ram(splits, cfg.image_size)):
        train, val, test, unlabeled = (cache.in_ram(samples, cfg.image_size) for samples in splits)
    return DataSplits(class_names, cfg.image_size, train, val, test, unlabeled)


def unlabeled_folder(root: Path) -> Samples:
    """Every image below `root`, labels unknown."""
    if not root.is_dir():
        raise UserError(f"dataset.unlabeled_root {root} is not a folder; point it at a folder of images")
    paths = list_images(root)
    if not paths:
        raise UserError(f"dataset.unlabeled_root {root} holds no images")
    unknown = np.full(len(paths), HIDDEN, dtype=np.int64)
    return Samples(labels=unknown, true_labels=unknown.copy(), paths=np.asarray(paths, dtype=object))
