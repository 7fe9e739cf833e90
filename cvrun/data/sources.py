"""Dataset sources: a registry of name -> function giving train and test samples.

Adding a dataset is one function decorated with @register_source and one
YAML file in configs/dataset/ (and a schema when it takes keys of its own: a
dataclass subclassing DatasetConfig, given to register_source, as shapes').
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cvrun.config import DatasetConfig
from cvrun.data import shapes
from cvrun.data.samples import Samples, list_images
from cvrun.errors import UserError
from cvrun.registry import Registry

log = logging.getLogger("cvrun")


@dataclass
class Source:
    class_names: list[str]
    train: Samples
    test: Samples
    # A held-out validation split the data comes with (an image-folder tree's val/ beside test/).
    val: Samples | None = None


Loader = Callable[[Any], Source]
SOURCES: Registry[Loader] = Registry("dataset")


def register_source(name: str, config: type = DatasetConfig, check: Callable[[Any], None] | None = None,
                    listed: bool = False) -> Callable[[Loader], Loader]:
    """`config`: the source's schema, DatasetConfig or a subclass with keys of its own. `check`: what can be
    checked of the data before a run folder is made, cheaply (a labels file's rows, a saved dataset's columns;
    no image decoded): splits.check_before_run calls it. `listed`: loading reads a listing and decodes nothing
    (a labels file), so splits.planned_splits may plan from it, as from an image-folder tree."""
    return SOURCES.register(name, config=config, check=check, listed=listed)


def load_source(cfg: Any) -> Source:
    return SOURCES.get(cfg.name)(cfg)


@dataclass
class TreeLayout:
    """Which folders of an image-folder tree hold the training, validation and test images."""

    train: str
    val: str | None
    test: str | None


def tree_layout(root: Path, cfg: Any) -> TreeLayout:
    """dataset.train_dir / val_dir / test_dir, where unset: test/ if present, else val/ as the held-out split
    (ImageNet's layout); val/ beside test/ is the validation split."""
    def present(name: str | None) -> str | None:
        return name if name is not None and (root / name).is_dir() else None

    test = cfg.test_dir or present("test") or present("val")
    val = cfg.val_dir or (present("val") if test != "val" else None)
    return TreeLayout(cfg.train_dir, val, test)


def is_image_tree(root: Path, cfg: Any) -> bool:
    layout = tree_layout(root, cfg)
    return (root / layout.train).is_dir() and layout.test is not None


def class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def _scan_split(folder: Path, class_names: list[str], root: Path) -> Samples:
    paths, labels = [], []
    for label, name in enumerate(class_names):
        files = list_images(folder / name)
        if not files:
            raise UserError(f"class folder {folder / name} holds no images; add images to it or remove it")
        paths += files
        labels += [label] * len(files)
    return Samples.from_paths(paths, np.asarray(labels), root)


def check_same_classes(root: Path, layout: TreeLayout) -> list[str]:
    """The class folder names of the training folder; every other split must have the same."""
    train = class_folders(root / layout.train)
    for split in (layout.val, layout.test):
        if split is None:
            continue
        other = class_folders(root / split)
        if other != train:
            lacks = [f"{name}/ lacks {', '.join(sorted(set(a) - set(b)))}"
                     for name, a, b in ((split, train, other), (layout.train, other, train)) if set(a) - set(b)]
            raise UserError(f"the class folders of {root / layout.train} and {root / split} differ: {'; '.join(lacks)}; "
                            "give every split the same class folders")
    return train


def image_tree_source(root: Path, cfg: Any) -> Source:
    """train/<class>/* and test/<class>/* (or val/<class>/*): class names are the folder names."""
    if not root.exists():
        raise UserError(f"dataset root {root} does not exist; set dataset.root to a folder with "
                        "train/<class>/ and test/<class>/ image folders")
    if root.is_file():
        raise UserError(f"dataset root {root} is a file, not a folder; unpack it and set dataset.root to the "
                        "folder holding train/ and test/")
    layout = tree_layout(root, cfg)
    if layout.test is None or not (root / layout.train).is_dir() and cfg.train_dir == "train":
        raise UserError(f"dataset root {root} has no train/ and test/ (or val/) folders; expected "
                        "train/<class>/*.jpg and test/<class>/*.jpg, or set dataset.train_dir and dataset.test_dir")
    for key, name in (("dataset.train_dir", layout.train), ("dataset.val_dir", layout.val),
                      ("dataset.test_dir", layout.test)):
        if name is not None and not (root / name).is_dir():
            raise UserError(f"{key}={name}: {root / name} is not a folder")
    try:
        class_names = check_same_classes(root, layout)
        splits = {name: _scan_split(root / name, class_names, root) if name else None
                  for name in (layout.train, layout.val, layout.test)}
    except PermissionError as err:
        raise UserError(f"dataset root {root} cannot be read ({err.strerror}: {err.filename}); "
                        "give this user read access to it") from None
    if not class_names:
        raise UserError(f"no class folders under {root / layout.train}; expected {layout.train}/<class>/<image> "
                        "files (.bmp, .jpg, .png, ...)")
    if layout.test == "val" and cfg.test_dir is None:
        log.info("dataset root %s has no test/: val/ is the held-out test split", root)
    if layout.val is not None:
        log.info("validation images come from %s/ (dataset.val_fraction is not used)", layout.val)
    return Source(class_names, splits[layout.train], splits[layout.test], splits[layout.val] if layout.val else None)


def require_root(cfg: Any) -> Path:
    if cfg.root is None:
        raise UserError(f"dataset={cfg.name} needs dataset.root: the folder that holds (or will hold) its images; "
                        "add dataset.root=PATH")
    return Path(cfg.root).expanduser()


def _torchvision_source(dataset_class: str, cfg: Any) -> Source:
    """A torchvision dataset, or an image-folder tree at the same root."""
    root = require_root(cfg)
    if is_image_tree(root, cfg):
        return image_tree_source(root, cfg)
    import torchvision.datasets

    loader = getattr(torchvision.datasets, dataset_class)
    try:
        train = loader(str(root), train=True, download=cfg.download)
        test = loader(str(root), train=False, download=cfg.download)
    except (RuntimeError, OSError) as err:
        how = ("the download failed (no network?)" if cfg.download
               else "dataset.download=false")
        raise UserError(
            f"{cfg.name} not found in {root.resolve()} and {how} ({str(err).splitlines()[0]}); "
            f"set dataset.root to a local copy: torchvision's {dataset_class} files or an "
            "image-folder tree with train/<class>/ and test/<class>/") from None
    return Source(list(train.classes), Samples.from_arrays(np.asarray(train.data), train.targets, "train"),
                  Samples.from_arrays(np.asarray(test.data), test.targets, "test"))


# cvrun name -> (torchvision dataset class, number of classes).
TORCHVISION_DATASETS = {"cifar10": ("CIFAR10", 10), "cifar100": ("CIFAR100", 100), "mnist": ("MNIST", 10),
                        "fashion_mnist": ("FashionMNIST", 10)}
# Class counts known without reading any data (for `cvrun info`).
KNOWN_CLASS_COUNTS = {**{name: count for name, (_, count) in TORCHVISION_DATASETS.items()},
                      "shapes": len(shapes.CLASSES)}


def count_classes(cfg: Any) -> int:
    """How many classes a dataset config yields, reading folder names (or a labels file) at most."""
    if cfg.classes:
        return len(cfg.classes)
    root = Path(cfg.root).expanduser() if cfg.root else None
    if root is not None and is_image_tree(root, cfg):
        return len(class_folders(root / cfg.train_dir))
    if cfg.name in KNOWN_CLASS_COUNTS:
        return KNOWN_CLASS_COUNTS[cfg.name]
    if getattr(SOURCES.get(cfg.name), "listed", False):
        return len(load_source(cfg).class_names)
    raise UserError(f"dataset root {root} has no train/<class>/ folders to count classes from")


def known_class_names(cfg: Any) -> list[str] | None:
    """The class names a dataset config yields where a listing tells them; None where only reading the
    data would (torchvision's files)."""
    if cfg.classes:
        return [str(name) for name in cfg.classes]
    root = Path(cfg.root).expanduser() if cfg.root else None
    if root is not None and is_image_tree(root, cfg):
        return class_folders(root / tree_layout(root, cfg).train)
    if cfg.name == "shapes":
        return list(shapes.CLASSES)
    if getattr(SOURCES.get(cfg.name), "listed", False):  # a labels file: its rows read, no image decoded
        return load_source(cfg).class_names
    return None


def _register_torchvision(name: str, dataset_class: str) -> None:
    @register_source(name)
    def load(cfg: Any) -> Source:
        return _torchvision_source(dataset_class, cfg)


for _name, (_dataset_class, _) in TORCHVISION_DATASETS.items():
    _register_torchvision(_name, _dataset_class)


@register_source("imagefolder")
def imagefolder(cfg: Any) -> Source:
    return image_tree_source(require_root(cfg), cfg)


@register_source("shapes", config=shapes.ShapesConfig)
def generated_shapes(cfg: Any) -> Source:
    train_images, train_labels = shapes.generate(cfg.train_size, cfg.image_size, seed=cfg.split_seed)
    test_images, test_labels = shapes.generate(cfg.test_size, cfg.image_size, seed=cfg.split_seed + 1)
    return Source(list(shapes.CLASSES), Samples.from_arrays(train_images, train_labels, "train"),
                  Samples.from_arrays(test_images, test_labels, "test"))
