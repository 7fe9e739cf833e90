"""A set of images with labels, held decoded in memory or as file paths, and how images reach the model's size.

Images up to 64 px (CIFAR's path) are squashed to image_size x image_size
when decoded. Larger ones keep their aspect ratio (`Sizing`): they are
decoded and held with the shorter side bounded (dataset.stored_size), a
training transform draws its random resized crop on them at that resolution,
and evaluation resizes the shorter side to image_size / crop_pct and takes the
centre crop, as timm and torchvision's reference scripts do.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np

from cvrun.errors import UserError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
HIDDEN = -1  # label of an image whose label training must not see
SMALL_IMAGE = 64  # image sizes up to this are squashed to the square (and pad-cropped in training)

INTERPOLATION_FLAGS = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC,
                       "area": cv2.INTER_AREA}
_JPEG_EXTENSIONS = (".jpg", ".jpeg", ".jpe")
_REDUCED_READS = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def fit_size(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size and image.shape[1] == size:
        return image
    shrinking = image.shape[0] > size or image.shape[1] > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def read_rgb(path: str, flags: int = cv2.IMREAD_COLOR) -> np.ndarray | None:
    """An image file read with OpenCV as RGB uint8 HWC (grey and RGBA files as RGB), or None if unreadable."""
    bgr = cv2.imread(path, flags)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def resize(image: np.ndarray, width: int, height: int, flag: int) -> np.ndarray:
    """Resize with an OpenCV interpolation flag. A shrink by 2x or more in both axes averages over the source
    area instead (INTER_AREA: antialiased, as torchvision's and PIL's resizing are; nearest stays nearest).
    Below 2x the flag's own filter is within 3 levels of torchvision's antialiased one on 99% of a photo's
    values, and INTER_AREA at a fractional factor costs 8x INTER_LINEAR (3.9 against 0.44 ms for 500x375 to
    341x256)."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    if flag != cv2.INTER_NEAREST and h >= 2 * height and w >= 2 * width:
        flag = cv2.INTER_AREA
    return cv2.resize(image, (width, height), interpolation=flag)


def shorter_side_to(height: int, width: int, side: int) -> tuple[int, int]:
    """(height, width) with the shorter side `side` and the aspect kept, rounded down as torchvision's Resize."""
    if width <= height:
        return int(side * height / width), side
    return side, int(side * width / height)


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central size x size pixels, offsets rounded as torchvision's CenterCrop."""
    h, w = image.shape[:2]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return image[top:top + size, left:left + size]


def jpeg_reduction(path: str, side: int) -> int:
    """1, 2, 4 or 8: the largest factor a JPEG can be decoded smaller by (libjpeg's DCT scaling, as PIL's draft
    mode) with its shorter side still at least `side`. The size comes from the file's header alone."""
    if not path.lower().endswith(_JPEG_EXTENSIONS):
        return 1
    from PIL import Image

    try:
        with Image.open(path) as header:
            shorter = min(header.size)
    except (OSError, ValueError):
        return 1  # cv2.imread then says whether the file can be read at all
    return next((factor for factor, _ in _REDUCED_READS if -(-shorter // factor) >= side), 1)


@dataclass(frozen=True)
class Sizing:
    """How a dataset's images become image_size x image_size (dataset.image_size, crop_pct, interpolation,
    stored_size). Small (<= 64 px): squashed to the square when decoded. Large: stored with the shorter side
    at most `stored_side`, aspect kept, never enlarged; evaluated as the centre crop of a resize of the
    shorter side to `resize_side`."""

    image_size: int
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    stored_size: int | None = None

    @staticmethod
    def of(cfg: Any) -> "Sizing":
        """The sizing a dataset config asks for."""
        return Sizing(cfg.image_size, cfg.crop_pct, cfg.interpolation, cfg.stored_size)

    @property
    def small(self) -> bool:
        return self.image_size <= SMALL_IMAGE

    @property
    def flag(self) -> int:
        return INTERPOLATION_FLAGS[self.interpolation]

    @property
    def resize_side(self) -> int:
        """The shorter side evaluation resizes to: image_size / crop_pct, rounded down as timm does."""
        return math.floor(self.image_size / self.crop_pct)

    @property
    def stored_side(self) -> int:
        return self.stored_size or self.resize_side

    def store(self, image: np.ndarray) -> np.ndarray:
        """A decoded image as it is held: small, the image_size square; large, the shorter side bounded."""
        if self.small:
            return fit_size(image, self.image_size)
        h, w = image.shape[:2]
        if min(h, w) <= self.stored_side:
            return image
        height, width = shorter_side_to(h, w, self.stored_side)
        return resize(image, width, height, self.flag)

    def read(self, path: str) -> np.ndarray | None:
        """An image file as it is held (see store), or None if unreadable. A large JPEG is decoded at 1/2, 1/4
        or 1/8 scale when its stored size allows, several times faster than a full decode and a shrink."""
        reduction = 1 if self.small else jpeg_reduction(path, self.stored_side)
        image = read_rgb(path, dict(_REDUCED_READS).get(reduction, cv2.IMREAD_COLOR))
        return None if image is None else self.store(image)

    def evaluate(self, image: np.ndarray) -> np.ndarray:
        """The image_size square evaluation sees: for a large image the centre crop of its shorter side resized to
        resize_side (a share crop_pct of it); a small one is that square already."""
        if self.small:
            return fit_size(image, self.image_size)
        height, width = shorter_side_to(*image.shape[:2], self.resize_side)
        return centre_crop(resize(image, width, height, self.flag), self.image_size)


class RaggedImages:
    """Images of different shapes (HxWx3 uint8 each) in one flat buffer: large images at their stored, aspect-true
    resolution, in memory or memory-mapped from the disk cache. Indexed like an array: an integer gives one
    image (a view), an index array or slice a RaggedImages sharing the buffer."""

    def __init__(self, buffer: np.ndarray, starts: np.ndarray, shapes: np.ndarray):
        self.buffer, self.starts, self.shapes = buffer, starts, shapes

    @staticmethod
    def stack(images: list[np.ndarray]) -> "RaggedImages":
        shapes = np.array([image.shape[:2] for image in images], dtype=np.int64).reshape(-1, 2)
        sizes = shapes.prod(axis=1) * 3
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        buffer = np.empty(int(sizes.sum()), dtype=np.uint8)
        for image, start, size in zip(images, starts, sizes):
            buffer[start:start + size] = np.ascontiguousarray(image).reshape(-1)
        return RaggedImages(buffer, starts, shapes)

    @staticmethod
    def concat(first: "RaggedImages", second: "RaggedImages") -> "RaggedImages":
        first, second = first.compacted(), second.compacted()
        return RaggedImages(np.concatenate([first.buffer, second.buffer]),
                            np.concatenate([first.starts, second.starts + len(first.buffer)]),
                            np.concatenate([first.shapes, second.shapes]))

    def compacted(self) -> "RaggedImages":
        """The same images in a buffer of their own, in order (after a take, the buffer holds others too)."""
        return RaggedImages.stack([self[i] for i in range(len(self))])

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: Any) -> Union[np.ndarray, "RaggedImages"]:
        if isinstance(index, (int, np.integer)):
            (h, w), start = self.shapes[index], self.starts[index]
            return self.buffer[start:start + h * w * 3].reshape(h, w, 3)
        return RaggedImages(self.buffer, self.starts[index], self.shapes[index])

    @property
    def nbytes(self) -> int:
        return int((self.shapes.prod(axis=1) * 3).sum())


Images = Union[np.ndarray, RaggedImages]


def decode(path: str, size: int) -> np.ndarray:
    """An image file as RGB uint8 HWC, resized to size x size."""
    image = read_rgb(path)
    if image is None:
        raise UserError(f"cannot decode image file {path}; remove it or replace it with a valid image")
    return fit_size(image, size)


def list_images(folder: Path) -> list[str]:
    """Every image file below `folder`, sorted. os.walk reads file types from the directory entries: no stat
    per file (pathlib's rglob + is_file took 1.1 s for CIFAR-10's 60,000 files, this 0.15 s)."""
    return sorted(os.path.join(top, name) for top, _, names in os.walk(folder)
                  for name in names if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS)


@dataclass
class Samples:
    """Labels plus decoded images (an N,H,W,3 uint8 array, or RaggedImages for large images of several shapes) or
    paths to decode lazily, or both: a cache keeps the paths of the images it decoded, so the files a split came
    from stay known (splits.refuse_overlap).

    `labels` is what training may see (HIDDEN for the unlabeled pool);
    `true_labels` is kept for scoring only (HIDDEN where nobody knows it);
    `ids` names each image stably (its path below the dataset root, or split/index), so that a
    run can record exactly which images it used (splits.split_record);
    `sizing`: the dataset's crop_pct, interpolation and stored_size (`with_sizing`); unset, their defaults.
    """

    labels: np.ndarray
    true_labels: np.ndarray
    images: Images | None = None
    paths: np.ndarray | None = None
    ids: np.ndarray | None = None
    sizing: Sizing | None = None

    def __post_init__(self) -> None:
        if self.ids is None:
            self.ids = np.arange(len(self.labels)).astype(str).astype(object)

    def __len__(self) -> int:
        return len(self.labels)

    def sizing_for(self, size: int) -> Sizing:
        """The sizing at `size`: the dataset's own, or the defaults at another size (LwF's old task)."""
        if self.sizing is not None and self.sizing.image_size == size:
            return self.sizing
        return Sizing(size)

    def with_sizing(self, sizing: Sizing) -> "Samples":
        return replace(self, sizing=sizing)

    def image(self, index: int, size: int) -> np.ndarray:
        """The size x size image evaluation sees (a large image's centre crop; see Sizing)."""
        return self.sizing_for(size).evaluate(self.stored(index, size))

    def stored(self, index: int, size: int) -> np.ndarray:
        """The image as held for `size`: small, the square; large, the aspect-true image a training crop is
        drawn on."""
        sizing = self.sizing_for(size)
        if self.images is not None:
            return sizing.store(self.images[index])
        image = sizing.read(self.paths[index])
        if image is None:
            raise UserError(f"cannot decode image file {self.paths[index]}; remove it or replace it with a valid "
                            "image")
        return image

    def take(self, indices: np.ndarray) -> "Samples":
        return Samples(
            labels=self.labels[indices],
            true_labels=self.true_labels[indices],
            images=None if self.images is None else self.images[indices],
            paths=None if self.paths is None else self.paths[indices],
            ids=self.ids[indices],
            sizing=self.sizing,
        )

    def hide_labels(self) -> "Samples":
        return replace(self, labels=np.full_like(self.labels, HIDDEN))

    def decoded(self, size: int) -> "Samples":
        if self.images is not None:
            return self
        if self.sizing_for(size).small:
            images: Images = (np.stack([decode(p, size) for p in self.paths]) if len(self)
                              else np.zeros((0, size, size, 3), np.uint8))
        else:
            images = RaggedImages.stack([self.stored(i, size) for i in range(len(self))])
        return replace(self, images=images)

    @staticmethod
    def from_arrays(images: np.ndarray, labels: np.ndarray, split: str = "") -> "Samples":
        """Decoded images; each is named `<split>/<index>`."""
        labels = np.asarray(labels, dtype=np.int64)
        ids = np.asarray([f"{split}/{i}" for i in range(len(labels))], dtype=object)
        return Samples(labels=labels, true_labels=labels.copy(), images=to_rgb_batch(images), ids=ids)

    @staticmethod
    def from_paths(paths: list[str], labels: np.ndarray, root: Path | None = None) -> "Samples":
        """Image files; each is named by its path below `root` (moving the tree renames nothing)."""
        labels = np.asarray(labels, dtype=np.int64)
        prefix = len(str(root).rstrip(os.sep)) + 1 if root is not None else 0  # paths are listed below root
        ids = [path[prefix:] for path in paths]
        return Samples(labels=labels, true_labels=labels.copy(), paths=np.asarray(paths, dtype=object),
                       ids=np.asarray(ids, dtype=object))

    @staticmethod
    def concat(first: "Samples", second: "Samples", size: int) -> "Samples":
        """Join two sets; if one is held as paths and the other decoded, decode both."""
        if (first.images is None) != (second.images is None):
            first, second = first.decoded(size), second.decoded(size)
        images = paths = None
        if first.images is not None:
            images = join_images(first.images, second.images, first.sizing_for(size))
        if first.paths is not None and second.paths is not None:
            paths = np.concatenate([first.paths, second.paths])
        return Samples(
            labels=np.concatenate([first.labels, second.labels]),
            true_labels=np.concatenate([first.true_labels, second.true_labels]),
            images=images,
            paths=paths,
            ids=np.concatenate([first.ids, second.ids]),
            sizing=first.sizing,
        )


def join_images(first: Images, second: Images, sizing: Sizing) -> Images:
    """Small: both squashed to the square, as one array. Large: as they are held (one array when they share a
    shape, else RaggedImages). Images read on access (shards.ShardImages) join their own kind themselves."""
    joined = getattr(first, "joined", None)
    if joined is not None and type(second) is type(first):
        return joined(second)
    if sizing.small:
        return np.concatenate([fit_batch(first, sizing.image_size), fit_batch(second, sizing.image_size)])
    if isinstance(first, np.ndarray) and isinstance(second, np.ndarray) and first.shape[1:] == second.shape[1:]:
        return np.concatenate([first, second])
    as_ragged = [im if isinstance(im, RaggedImages) else RaggedImages.stack(list(im)) for im in (first, second)]
    return RaggedImages.concat(*as_ragged)


def to_rgb_batch(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, dtype=np.uint8)
    if images.ndim == 3:
        return np.repeat(images[:, :, :, None], 3, axis=3)
    return images


def fit_batch(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1] == size and images.shape[2] == size:
        return images
    return np.stack([fit_size(im, size) for im in images])
