"""Dataset sources: a registry of name -> function giving train and test samples.

Adding a dataset is one function decorated with @register_source and one
YAML file in configs/dataset/.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cvrun.data import shapes
from cvrun.data.samples import Samples, list_images
from cvrun.errors import UserError


@dataclass
class Source:
    class_names: list[str]
    train: Samples
    test: Samples


SOURCES: dict[str, Callable[[Any], Source]] = {}


def register_source(name: str):
    def add(fn: Callable[[Any], Source]) -> Callable[[Any], Source]:
        SOURCES[name] = fn
        return fn
    return add


def load_source(cfg: Any) -> Source:
    if cfg.name not in SOURCES:
        raise UserError(f"unknown dataset '{cfg.name}'; valid datasets: {', '.join(sorted(SOURCES))}")
    return SOURCES[cfg.name](cfg)


def is_image_tree(root: Path) -> bool:
    return (root / "train").is_dir() and (root / "test").is_dir()


def _scan_split(folder: Path, class_names: list[str]) -> Samples:
    paths, labels = [], []
    for label, name in enumerate(class_names):
        files = list_images(folder / name) if (folder / name).is_dir() else []
        paths += files
        labels += [label] * len(files)
    return Samples.from_paths(paths, np.asarray(labels))


def image_tree_source(root: Path) -> Source:
    """train/<class>/* and test/<class>/*: class names are the folder names."""
    if not root.exists():
        raise UserError(f"dataset root {root} does not exist; set dataset.root to a folder with "
                        "train/<class>/ and test/<class>/ image folders")
    if root.is_file():
        raise UserError(f"dataset root {root} is a file, not a folder; unpack it and set dataset.root to the "
                        "folder holding train/ and test/")
    if not is_image_tree(root):
        raise UserError(f"dataset root {root} has no train/ and test/ folders; expected "
                        "train/<class>/*.jpg and test/<class>/*.jpg")
    try:
        class_names = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
        train = _scan_split(root / "train", class_names)
        test = _scan_split(root / "test", class_names)
    except PermissionError as err:
        raise UserError(f"dataset root {root} cannot be read ({err.strerror}: {err.filename}); "
                        "give this user read access to it") from None
    if len(train) == 0 or len(test) == 0:
        empty = "train" if len(train) == 0 else "test"
        raise UserError(f"no images found under {root / empty}; expected {empty}/<class>/<image> files "
                        f"({', '.join(sorted(e.lstrip('.') for e in ('.jpg', '.png', '.bmp')))}, ...)")
    return Source(class_names, train, test)


def _torchvision_source(dataset_class: str, cfg: Any) -> Source:
    """A torchvision dataset, or an image-folder tree at the same root."""
    root = Path(cfg.root).expanduser()
    if is_image_tree(root):
        return image_tree_source(root)
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
    return Source(list(train.classes), Samples.from_arrays(np.asarray(train.data), train.targets),
                  Samples.from_arrays(np.asarray(test.data), test.targets))


# cvrun name -> (torchvision dataset class, number of classes).
TORCHVISION_DATASETS = {"cifar10": ("CIFAR10", 10), "cifar100": ("CIFAR100", 100), "mnist": ("MNIST", 10),
                        "fashion_mnist": ("FashionMNIST", 10)}
# Class counts known without reading any data (for `cvrun info`).
KNOWN_CLASS_COUNTS = {**{name: count for name, (_, count) in TORCHVISION_DATASETS.items()},
                      "shapes": len(shapes.CLASSES)}


def count_classes(cfg: Any) -> int:
    """How many classes a dataset config yields, reading folder names at most."""
    if cfg.classes:
        return len(cfg.classes)
    root = Path(cfg.root).expanduser() if cfg.root else None
    if root is not None and is_image_tree(root):
        return sum(1 for p in (root / "train").iterdir() if p.is_dir())
    if cfg.name in KNOWN_CLASS_COUNTS:
        return KNOWN_CLASS_COUNTS[cfg.name]
    raise UserError(f"dataset root {root} has no train/<class>/ folders to count classes from")


def _register_torchvision(name: str, dataset_class: str) -> None:
    @register_source(name)
    def load(cfg: Any) -> Source:
        return _torchvision_source(dataset_class, cfg)


for _name, (_dataset_class, _) in TORCHVISION_DATASETS.items():
    _register_torchvision(_name, _dataset_class)


@register_source("imagefolder")
def imagefolder(cfg: Any) -> Source:
    return image_tree_source(Path(cfg.root).expanduser())


@register_source("shapes")
def generated_shapes(cfg: Any) -> Source:
    train_images, train_labels = shapes.generate(cfg.train_size, cfg.image_size, seed=cfg.split_seed)
    test_images, test_labels = shapes.generate(cfg.test_size, cfg.image_size, seed=cfg.split_seed + 1)
    return Source(list(shapes.CLASSES), Samples.from_arrays(train_images, train_labels),
                  Samples.from_arrays(test_images, test_labels))
