"""`dataset=shards`: WebDataset-style tar shards (`dataset.shards=train-{000..099}.tar`), read by random access.

Each sample of a shard is an image member (`<key>.jpg`, `.png`, ...) and a `<key>.cls` member holding its
class index as text (the layout webdataset's TarWriter and `cvrun shard` write). Each tar is indexed once:
where each image's bytes start and how many there are, and each sample's class (tarfile reads the headers,
skipping the images). The index is kept in the cvrun cache folder (dataset.cache_dir, else $CVRUN_CACHE_DIR or
~/.cache/cvrun), named by a hash of the shard's path, size and modification time, never beside the data (which
may be read-only); a changed shard is indexed again.

An image is then read when it is used: one seek and one read of its bytes, decoded from memory with OpenCV
(`ShardImages`). So the shards are a random-access set of images like an image-folder tree: the seeded
sampler shuffles the whole training set exactly each epoch (rather than webdataset's approximate shuffle
buffer), splits it across torchrun ranks and loader workers so each image is seen once an epoch, and a resumed
run sees the order an uninterrupted one would have; subset, labeled_per_class, validation, fingerprints,
inspect and the semi-supervised pool work unchanged. Nothing is cached: memory holds the index (about 30
bytes an image) and the batches in flight, however many images the shards hold.

The patterns are path keys: relative to the folder cvrun starts in, as every file key. Class names:
dataset.label_names, else a classes.txt beside the first training shard (line i names class i, as `cvrun
shard` writes it), else the indices themselves ("0", "1", ... up to the largest training .cls, as dataset=csv
names integer labels). The test split: dataset.test_shards, else a stratified share dataset.test_fraction of
the training samples held out with dataset.split_seed.

webdataset's own readers stream a tar from start to end (no index, no exact resume); its `wids` indexed
datasets are not part of webdataset 1.0.2 (a separate package), memory-map whole tars (every page read counts in
the process's resident memory) and need a JSON shard list: tarfile's offsets and a read per image are enough.
webdataset provides the brace expansion (`expand_urls`) and the writer (`cvrun shard`).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Union

import cv2
import numpy as np

from cvrun.config import DatasetConfig, path_field
from cvrun.data.cache import default_cache_dir
from cvrun.data.csv_source import held_out_test
from cvrun.data.samples import IMAGE_EXTENSIONS, Samples
from cvrun.data.sources import Source, register_source
from cvrun.errors import UserError, require
from cvrun.io import atomic_write_bytes

log = logging.getLogger("cvrun")

CLASS_EXTENSION = "cls"
CLASSES_FILE = "classes.txt"
INDEX_VERSION = "1"  # bump when the index's arrays change


@dataclass
class ShardsConfig(DatasetConfig):
    # Brace patterns of uncompressed tar files (train-{000..099}.tar); several joined by '::'.
    shards: Optional[str] = path_field()
    val_shards: Optional[str] = path_field()
    # null: hold out test_fraction of the training samples (stratified, dataset.split_seed).
    test_shards: Optional[str] = path_field()
    test_fraction: float = 0.2
    # Class i is named label_names[i]; null: classes.txt beside the first training shard, else "0", "1", ...
    label_names: Optional[List[str]] = None

    def check(self) -> None:
        super().check()
        require(0 < self.test_fraction < 1, f"dataset.test_fraction must be in (0, 1), got {self.test_fraction}")
        require(self.cache in ("auto", "none"), f"dataset.cache={self.cache}: dataset=shards reads each image from "
                "its tar file when it is used and keeps no cache; set dataset.cache=none (ram and disk are for image "
                "files)")
        require(not self.unlabeled_root, "dataset.unlabeled_root is a folder of image files, which dataset=shards does "
                "not mix with its tars; use dataset.labeled_per_class for an unlabeled pool of the shards")


class ShardImages:
    """Images stored in tar files, decoded when read. Indexed like an array (as samples.RaggedImages): an integer
    gives one RGB uint8 HxWx3 image, read with one seek and one read; an index array or slice a ShardImages of
    those images. Nothing stays open: each read opens the file, so worker processes and threads share nothing."""

    def __init__(self, files: tuple[str, ...], shard: np.ndarray, offset: np.ndarray, size: np.ndarray):
        self.files, self.shard, self.offset, self.size = files, shard, offset, size

    def __len__(self) -> int:
        return len(self.shard)

    def encoded(self, index: int) -> bytes:
        with open(self.files[self.shard[index]], "rb") as handle:
            handle.seek(int(self.offset[index]))
            return handle.read(int(self.size[index]))

    def __getitem__(self, index: Any) -> Union[np.ndarray, "ShardImages"]:
        if not isinstance(index, (int, np.integer)):
            return ShardImages(self.files, self.shard[index], self.offset[index], self.size[index])
        bgr = cv2.imdecode(np.frombuffer(self.encoded(index), np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise UserError(f"cannot decode the image at byte {self.offset[index]} of {self.files[self.shard[index]]}; "
                            "write the shard again (cvrun shard) or remove that sample")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def joined(self, other: "ShardImages") -> "ShardImages":
        """Both sets' images (a regime adding pseudo-labeled pool images to the training set)."""
        files = tuple(dict.fromkeys(self.files + other.files))
        where = np.asarray([files.index(f) for f in other.files], dtype=np.int32)
        return ShardImages(files, np.concatenate([self.shard, where[other.shard]]),
                           np.concatenate([self.offset, other.offset]), np.concatenate([self.size, other.size]))


@dataclass
class ShardIndex:
    """One tar's samples, in the tar's order: key, class index, where the image's bytes are."""

    keys: np.ndarray
    labels: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray


def webdataset_package() -> Any:
    try:
        import webdataset
    except ImportError:
        raise UserError('dataset=shards and cvrun shard need the webdataset package: pip install "cvrun[shards]"') \
            from None
    return webdataset


def expand(pattern: str, key: str) -> list[Path]:
    """The files a brace pattern names, each of which must exist."""
    files = [Path(name).expanduser() for name in webdataset_package().shardlists.expand_urls(pattern)]
    missing = [f for f in files if not f.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more of the {len(files)} it names)" if len(missing) > 1 else ""
        raise UserError(f"{key}={pattern}: no file {missing[0]}{more}; name existing tar files, e.g. "
                        "train-{000..099}.tar for train-000.tar ... train-099.tar")
    return files


def read_index(path: Path) -> ShardIndex:
    """Every sample of one tar: tarfile reads each member's header and skips its data, reading only the .cls."""
    images: dict[str, tarfile.TarInfo] = {}
    classes: dict[str, str] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                folder, base = os.path.split(member.name)
                stem, _, extension = base.partition(".")  # webdataset's key: the name up to the first dot
                key = os.path.join(folder, stem)
                if extension.lower() == CLASS_EXTENSION:
                    classes[key] = tar.extractfile(member).read().decode("utf-8", "replace").strip()
                elif f".{extension.lower()}" in IMAGE_EXTENSIONS:
                    images[key] = member
    except (tarfile.ReadError, EOFError) as err:
        raise UserError(f"{path} is not an uncompressed tar file ({err}); shards are read by random access, which "
                        "a compressed tar does not allow: write them with cvrun shard or tar -cf") from None
    if not classes:
        raise UserError(f"{path} has no .cls members (a class index per sample); write each sample as <key>.jpg or "
                        "<key>.png with <key>.cls, as cvrun shard does")
    unlabeled, imageless = sorted(set(images) - set(classes)), sorted(set(classes) - set(images))
    if unlabeled or imageless:
        key, what = (unlabeled[0], "an image but no .cls") if unlabeled else (imageless[0], "a .cls but no image")
        raise UserError(f"{path}: sample {key} has {what}; every sample needs both (<key>.jpg or .png, <key>.cls)")
    keys = list(images)
    not_integer = [key for key in keys if not classes[key].lstrip("-").isdigit()]
    if not_integer:
        raise UserError(f"{path}: {not_integer[0]}.cls holds {classes[not_integer[0]]!r}, not a class index; write the "
                        "class's index (0, 1, ...) and name the classes in classes.txt or dataset.label_names")
    return ShardIndex(np.asarray(keys, dtype=object), np.asarray([int(classes[k]) for k in keys], dtype=np.int64),
                      np.asarray([images[k].offset_data for k in keys], dtype=np.int64),
                      np.asarray([images[k].size for k in keys], dtype=np.int64))


def cached_index(path: Path, folder: Path) -> ShardIndex:
    """read_index's result, kept in `folder` under a hash of the shard's path, size and modification time."""
    stat = path.stat()
    key = hashlib.sha256(f"{INDEX_VERSION}\t{path.resolve()}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    saved = folder / "shard-index" / f"{path.stem}-{key.hexdigest()[:16]}.npz"
    if saved.is_file():
        with np.load(saved, allow_pickle=False) as arrays:
            return ShardIndex(arrays["keys"].astype(object), arrays["labels"], arrays["offsets"], arrays["sizes"])
    index = read_index(path)
    buffer = io.BytesIO()
    np.savez(buffer, keys=index.keys.astype(str), labels=index.labels, offsets=index.offsets, sizes=index.sizes)
    try:
        atomic_write_bytes(saved, buffer.getbuffer())
    except OSError as err:  # a read-only cache folder: index again next time
        log.warning("cannot keep the index of %s in %s (%s); it is read again at the next start", path, saved.parent,
                    err)
    return index


def split_samples(files: list[Path], cache_folder: Path) -> Samples:
    """The samples of some shards, each named <shard file>/<key>, the shard's path below the folder all of them
    are in (moving that folder renames nothing)."""
    indexes = [cached_index(path, cache_folder) for path in files]
    labels = np.concatenate([index.labels for index in indexes])
    images = ShardImages(tuple(str(f) for f in files),
                         np.concatenate([np.full(len(index.keys), i, dtype=np.int32)
                                         for i, index in enumerate(indexes)]),
                         np.concatenate([index.offsets for index in indexes]),
                         np.concatenate([index.sizes for index in indexes]))
    common = os.path.commonpath([str(path.parent) for path in files])
    ids = np.concatenate([np.asarray([f"{os.path.relpath(path, common)}/{key}" for key in index.keys], dtype=object)
                          for path, index in zip(files, indexes)])
    return Samples(labels=labels, true_labels=labels.copy(), images=images, ids=ids)


def class_names_of(cfg: Any, first_shard: Path, train_labels: np.ndarray) -> tuple[list[str], str]:
    """The class names, and where they come from (for the error of an index out of range)."""
    if cfg.label_names:
        return [str(name) for name in cfg.label_names], "dataset.label_names"
    listed = first_shard.parent / CLASSES_FILE
    if listed.is_file():
        return [line.strip() for line in listed.read_text().splitlines() if line.strip()], str(listed)
    return [str(i) for i in range(int(train_labels.max()) + 1)], "the largest training .cls"


def check_range(samples: Samples, class_names: list[str], named: str, where: str) -> None:
    bad = np.flatnonzero((samples.labels < 0) | (samples.labels >= len(class_names)))
    if len(bad):
        raise UserError(f"{samples.ids[bad[0]]}.cls holds class {samples.labels[bad[0]]}, out of range for the "
                        f"{len(class_names)} classes of {named} ({len(bad)} sample{'s' if len(bad) > 1 else ''} "
                        f"of {where}); class indices run from 0 to {len(class_names) - 1}")


def check_shards(cfg: Any) -> None:
    """Before a run folder is made: every pattern names files, and each tar is indexed (kept for the run)."""
    tar_shards(cfg)


@register_source("shards", config=ShardsConfig, check=check_shards, listed=True)
def tar_shards(cfg: Any) -> Source:
    if not cfg.shards:
        raise UserError("dataset=shards needs dataset.shards: a brace pattern of the training tar files, e.g. "
                        "dataset.shards=shards/train-{000..099}.tar")
    folder = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    patterns = {"train": ("dataset.shards", cfg.shards), "val": ("dataset.val_shards", cfg.val_shards),
                "test": ("dataset.test_shards", cfg.test_shards)}
    files = {split: expand(pattern, key) for split, (key, pattern) in patterns.items() if pattern}
    splits = {split: split_samples(paths, folder) for split, paths in files.items()}
    train = splits["train"]
    class_names, named = class_names_of(cfg, files["train"][0], train.labels)
    for split, samples in splits.items():
        check_range(samples, class_names, named, patterns[split][1])
    test = splits.get("test")
    if test is None:
        train, test = held_out_test(train, cfg.test_fraction, cfg.split_seed)
    log.info("dataset=shards: %d images in %d tar files, read from the tars as they are used (no cache)",
             sum(len(s) for s in splits.values()), sum(len(paths) for paths in files.values()))
    return Source(class_names, train, test, splits.get("val"))
