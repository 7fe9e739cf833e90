"""From a source to the splits a run uses: classes, subset, labeled pool, validation.

Order: keep `dataset.classes` -> stratified `dataset.subset` of the training
images -> a long tail of `dataset.imbalance_ratio` -> `dataset.labeled_per_class`
labeled images per class (the rest form the unlabeled pool, labels hidden) ->
`dataset.val_fraction` of the labeled images held out for validation (unless the
data comes with a val/ folder). The test split stays as it is.
All draws are stratified and seeded by `dataset.split_seed`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cvrun.data import cache
from cvrun.data.samples import HIDDEN, Samples, Sizing, list_images
from cvrun.data.sources import SOURCES, Source, is_image_tree, load_source
from cvrun.errors import UserError
from cvrun.io import file_sha256


@dataclass
class DataSplits:
    class_names: list[str]
    image_size: int
    train: Samples
    val: Samples | None
    test: Samples
    unlabeled: Samples | None
    # What each split holds (split_record), taken when the splits are built: a regime that changes
    # `train` (adding pseudo-labeled images) still records the data the run was given.
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def split_record(samples: Samples, class_names: list[str]) -> dict[str, Any]:
    """Image count, count per class (by true label; unlabeled where nobody knows it), and a fingerprint of
    the ordered image names with their labels: another image, label or order gives another fingerprint."""
    truth = samples.true_labels
    per_class = dict(zip(class_names, np.bincount(truth[truth >= 0], minlength=len(class_names)).tolist()))
    if (truth < 0).any():
        per_class["(unlabeled)"] = int((truth < 0).sum())
    digest = hashlib.sha256()
    for name, label in zip(samples.ids, truth.tolist()):
        digest.update(f"{name}\t{label}\n".encode())
    return {"images": len(samples), "per_class": per_class, "fingerprint": digest.hexdigest()[:16]}


def split_changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between two records of the splits, in words: 'train/cat has 30 more images'."""
    changes = []
    for split in dict.fromkeys([*recorded, *current]):
        old, new = recorded.get(split), current.get(split)
        if old == new:
            continue
        if old is None or new is None:
            changes.append(f"there is {'a new' if old is None else 'no longer a'} {split} split")
            continue
        counts = []
        for name in dict.fromkeys([*old["per_class"], *new["per_class"]]):
            diff = new["per_class"].get(name, 0) - old["per_class"].get(name, 0)
            if diff:
                counts.append(f"{split}/{name} has {abs(diff)} {'more' if diff > 0 else 'fewer'} image"
                              f"{'s' if abs(diff) > 1 else ''}")
        changes += counts or [f"{split} has as many images per class but other images, labels or order"]
    return changes


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


def long_tail_counts(labels: np.ndarray, num_classes: int, ratio: float) -> dict[int, int]:
    """Images class c keeps in a long tail of imbalance `ratio` (largest class over smallest): the exponential
    profile of Cui et al. 2019, n_c = n_max x (1 / ratio)^(c / (C - 1)), by class index; n_max is the largest
    class's size, and no class keeps more than it has (or fewer than 1)."""
    sizes = np.bincount(labels, minlength=num_classes)
    steps = np.arange(num_classes) / max(num_classes - 1, 1)
    wanted = (sizes.max() * (1.0 / ratio) ** steps).astype(int)
    return {c: int(n) for c, n in enumerate(np.minimum(np.maximum(wanted, 1), sizes))}


def stratified_pick(labels: np.ndarray, counts: dict[int, int], rng: np.random.Generator) -> np.ndarray:
    """Indices of counts[c] random images of each class c (sorted)."""
    picked = [rng.permutation(np.flatnonzero(labels == c))[:n] for c, n in counts.items()]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def _complement(n: int, indices: np.ndarray) -> np.ndarray:
    mask = np.ones(n, dtype=bool)
    mask[indices] = False
    return np.flatnonzero(mask)


# planned_splits' results by dataset config: a sweep's jobs share theirs, and the tree is listed once.
_planned: dict[str, DataSplits | None] = {}


def planned_splits(cfg: Any) -> DataSplits | None:
    """The splits build_splits will make, from an image-folder tree's file listing alone (nothing decoded, nothing
    cached) or a source registered as listed (a labels file): what a regime can check of its data before the run
    folder exists. None where finding them would read images: other sources (torchvision's files, generated
    shapes, a saved Hugging Face dataset) and an unlabeled_root (whose overlap check reads bytes, and which makes
    the pool non-empty anyway)."""
    from omegaconf import OmegaConf

    key = OmegaConf.to_yaml(cfg)
    if key not in _planned:
        root = Path(cfg.root).expanduser() if cfg.root else None
        listed = not cfg.unlabeled_root and (root is not None and is_image_tree(root, cfg)
                                             or getattr(SOURCES.get(cfg.name), "listed", False))
        _planned[key] = build_splits(OmegaConf.merge(cfg, {"cache": "none"})) if listed else None
    return _planned[key]


def build_splits(cfg: Any) -> DataSplits:
    source = load_source(cfg)
    sizing = Sizing.of(cfg)  # images above 64 px: the stored side, crop_pct and interpolation
    source = Source(source.class_names, *(None if samples is None else samples.with_sizing(sizing)
                                          for samples in (source.train, source.test, source.val)))
    if cfg.cache == "disk":
        folder = Path(cfg.cache_dir) if cfg.cache_dir else cache.default_cache_dir()
        source = Source(source.class_names, *(
            None if samples is None else cache.on_disk(samples, cfg.image_size, folder, f"{cfg.name}-{split}")
            for split, samples in (("train", source.train), ("test", source.test), ("val", source.val))))
    class_names, train, test, given_val = source.class_names, source.train, source.test, source.val
    rng = np.random.default_rng(cfg.split_seed)
    if cfg.classes:
        keep = [str(name) for name in cfg.classes]
        unknown = [name for name in keep if name not in class_names]
        if unknown:
            raise UserError(f"dataset.classes: unknown class {', '.join(unknown)}; "
                            f"classes of {cfg.name}: {', '.join(class_names)}")
        twice = sorted({name for name in keep if keep.count(name) > 1})
        if twice:
            raise UserError(f"dataset.classes names {', '.join(twice)} more than once; list each class once")
        train, test = keep_classes(train, class_names, keep), keep_classes(test, class_names, keep)
        given_val = None if given_val is None else keep_classes(given_val, class_names, keep)
        class_names = keep
    if len(class_names) < 2:
        raise UserError(f"dataset {cfg.name} has {len(class_names)} class ({', '.join(class_names)}); a classifier "
                        "needs at least 2: keep more classes in dataset.classes")
    if cfg.subset is not None and cfg.subset < len(train):
        train = train.take(stratified_pick(train.labels, per_class_counts(train.labels, cfg.subset), rng))
    if cfg.imbalance_ratio is not None:
        train = train.take(stratified_pick(train.labels, long_tail_counts(train.labels, len(class_names),
                                                                          cfg.imbalance_ratio), rng))
    unlabeled = None
    if cfg.labeled_per_class is not None:
        labeled = stratified_pick(train.labels, {c: cfg.labeled_per_class for c in np.unique(train.labels)}, rng)
        unlabeled = train.take(_complement(len(train), labeled)).hide_labels()
        train = train.take(labeled)
    val = given_val
    if val is None and cfg.val_fraction > 0:
        held = stratified_pick(train.labels, per_class_counts(train.labels, round(cfg.val_fraction * len(train))), rng)
        val, train = train.take(held), train.take(_complement(len(train), held))
    if cfg.unlabeled_root:
        extra = unlabeled_folder(Path(cfg.unlabeled_root).expanduser()).with_sizing(sizing)
        refuse_overlap(extra, f"dataset.unlabeled_root={cfg.unlabeled_root}", {"test": test, "validation": val},
                       by_content=True)
        unlabeled = extra if unlabeled is None else Samples.concat(unlabeled, extra, cfg.image_size)
    if len(train) == 0:
        raise UserError(f"no training images left after the split settings of dataset {cfg.name}; "
                        "raise dataset.subset or dataset.labeled_per_class, or lower dataset.val_fraction")
    splits = [train, val, test, unlabeled]
    record = {name: split_record(samples, class_names)
              for name, samples in zip(("train", "val", "test", "unlabeled"), splits) if samples is not None}
    train, val, test, unlabeled = cache.hold(splits, cfg)
    return DataSplits(class_names, cfg.image_size, train, val, test, unlabeled, record)


def unlabeled_folder(root: Path) -> Samples:
    """Every image below `root`, labels unknown."""
    if not root.is_dir():
        raise UserError(f"dataset.unlabeled_root {root} is not a folder; point it at a folder of images")
    paths = list_images(root)
    if not paths:
        raise UserError(f"dataset.unlabeled_root {root} holds no images")
    return Samples.from_paths(paths, np.full(len(paths), HIDDEN), root)


def check_before_run(cfg: Any) -> None:
    """What the dataset config can be checked for before a run folder is made, from directory listings alone:
    dataset.unlabeled_root is a folder of images, none of them a file of an image-folder tree's test or
    validation folder; and what the source checks cheaply (register_source's `check`). (build_splits checks
    file contents, and the validation images held out of train/.)"""
    check_source = getattr(SOURCES.get(cfg.name), "check", None)  # a plugin's may have none
    if check_source is not None:
        check_source(cfg)
    if not cfg.unlabeled_root:
        return
    extra = unlabeled_folder(Path(cfg.unlabeled_root).expanduser())
    root = Path(cfg.root).expanduser() if cfg.root else None
    if root is not None and is_image_tree(root, cfg):
        source = load_source(cfg)  # an image-folder tree: its file listing, nothing decoded
        refuse_overlap(extra, f"dataset.unlabeled_root={cfg.unlabeled_root}",
                       {"test": source.test, "validation": source.val}, by_content=False)


def refuse_overlap(extra: Samples, named: str, held_out: dict[str, Samples | None], by_content: bool) -> None:
    """A UserError when images of an extra folder (`named`: its key=value) are images of a held-out split: the same file (by
    its resolved path) or, with `by_content`, a file with the same bytes. Splits held as decoded arrays
    (torchvision's files, shapes) have no files to compare."""
    extra_paths = [os.path.realpath(path) for path in extra.paths]
    for split, samples in held_out.items():
        if samples is None or samples.paths is None or not len(samples):
            continue
        held_paths = {os.path.realpath(path) for path in samples.paths}
        same = {path for path in extra_paths if path in held_paths}
        copies = same_contents(sorted(set(extra_paths) - same), sorted(held_paths)) if by_content else {}
        if same or copies:
            example = (f"{min(same)} is a {split} image" if same else
                       f"{min(copies)} has the bytes of {copies[min(copies)]}")
            raise UserError(f"{named} overlaps the {split} split: {len(same) + len(copies)} of its images are {split} "
                            f"images ({example}); the {split} score would count images the model trained on: "
                            "remove them from that folder or name another one")


def same_contents(paths: list[str], others: list[str]) -> dict[str, str]:
    """Each of `paths` whose bytes equal one of `others`' -> that other file.

    Byte equality is what a copy of a split's file has (cp, rsync, a re-download); a re-encoded copy would
    take decoding every image to find, which no run start should pay for. Files are compared by size first,
    so only files of a size both sides have are read; SHA-256 stands for the bytes (no two different files
    share a digest in practice)."""
    sizes: dict[int, list[str]] = {}
    for other in others:
        sizes.setdefault(os.path.getsize(other), []).append(other)
    candidates = [path for path in paths if os.path.getsize(path) in sizes]
    if not candidates:
        return {}
    digests = {file_sha256(other): other for path in candidates for other in sizes.pop(os.path.getsize(path), [])}
    return {path: digests[digest] for path in candidates if (digest := file_sha256(path)) in digests}
