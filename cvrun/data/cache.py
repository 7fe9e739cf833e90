"""Decoded-image caches for datasets held as files (`dataset.cache`).

Decoding costs about 140 us per CIFAR-10 PNG on one core here: 7 s an epoch for
50,000 images, every epoch. Decoded once, an image is a slice of one uint8 array.

Images above 64 px are held at their stored resolution (samples.Sizing: aspect
kept, the shorter side bounded) in one flat buffer (RaggedImages); the disk
cache keeps that buffer and its index (offsets and shapes) as two .npy files.

- `ram`: the images a run uses are decoded once, at the start, on every core.
- `disk`: the whole source folder is decoded once into an .npy file under
  `dataset.cache_dir`, named by a hash of the folder's file list (paths, sizes,
  modification times) and the image size, so it survives between runs, serves
  every subset and class selection, and is rebuilt when a file changes.
- `auto` (default): `ram` when the decoded images take under a quarter of this
  machine's memory, else `none`.
- `none`: each image is decoded from its file every time it is read.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from cvrun.data.samples import RaggedImages, Samples, decode
from cvrun.io import atomic_write_bytes

log = logging.getLogger("cvrun")


def _on_all_cores(fill, count: int) -> None:
    """fill(index) for every index, on all cores (OpenCV releases the GIL)."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(fill, range(count), chunksize=256))


def decode_all(paths: np.ndarray, size: int) -> np.ndarray:
    """Every file decoded into one (N, size, size, 3) uint8 array (small images: squashed to the square)."""
    images = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def fill(index: int) -> None:
        images[index] = decode(paths[index], size)

    _on_all_cores(fill, len(paths))
    return images


def decode_stored(samples: Samples, size: int) -> RaggedImages:
    """Every file of `samples` at its stored resolution (large images: aspect kept, shorter side bounded)."""
    images: list = [None] * len(samples)

    def fill(index: int) -> None:
        images[index] = samples.stored(index, size)

    _on_all_cores(fill, len(samples))
    return RaggedImages.stack(images)


def decode_samples(samples: Samples, size: int) -> np.ndarray | RaggedImages:
    return decode_all(samples.paths, size) if samples.sizing_for(size).small else decode_stored(samples, size)


def in_ram(samples: Samples | None, size: int) -> Samples | None:
    if samples is None or samples.images is not None:
        return samples
    return replace(samples, images=decode_samples(samples, size))


# Bytes per stored image above 64 px, reckoned at 4:3 (the shape of most photos; only decoding tells).
_PHOTO_ASPECT = 4 / 3


def fits_in_ram(samples: list[Samples | None], size: int) -> bool:
    files = [s for s in samples if s is not None and s.images is None]
    needed = sum(len(s) * _stored_bytes(s, size) for s in files)
    total_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return needed < total_memory // 4


def _stored_bytes(samples: Samples, size: int) -> float:
    sizing = samples.sizing_for(size)
    return size * size * 3 if sizing.small else sizing.stored_side ** 2 * _PHOTO_ASPECT * 3


def content_key(paths: np.ndarray, size: int, sizing: str = "") -> str:
    """A hash of what the decoded array depends on: each file's path, size and modification time, and how
    images are sized (large images: the stored side and the interpolation)."""
    digest = hashlib.sha256(f"{size}\n{sizing}".encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _save(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    # Atomic: another run building the same cache at once ends with the same whole file.
    atomic_write_bytes(path, buffer.getbuffer())


def on_disk(samples: Samples, size: int, cache_dir: Path, name: str) -> Samples:
    """`samples` with its images read from (or first decoded into) the disk cache."""
    if samples.images is not None:
        return samples
    sizing = samples.sizing_for(size)
    if sizing.small:
        path = cache_dir / f"{name}-{size}px-{content_key(samples.paths, size)}.npy"
        if not path.is_file():
            log.info("decoding %d images into the cache %s", len(samples), path)
            _save(path, decode_all(samples.paths, size))
        return replace(samples, images=np.load(path, mmap_mode="r"))
    key = content_key(samples.paths, size, f"stored {sizing.stored_side} {sizing.interpolation}")
    pixels = cache_dir / f"{name}-{sizing.stored_side}side-{key}.npy"
    index = pixels.with_name(pixels.stem + "-index.npy")
    if not (pixels.is_file() and index.is_file()):
        log.info("decoding %d images at a shorter side of at most %d px into the cache %s", len(samples),
                 sizing.stored_side, pixels)
        images = decode_stored(samples, size)
        _save(index, np.concatenate([images.starts[:, None], images.shapes], axis=1))
        _save(pixels, images.buffer)
    starts_and_shapes = np.load(index)
    return replace(samples, images=RaggedImages(np.load(pixels, mmap_mode="r"), starts_and_shapes[:, 0],
                                                starts_and_shapes[:, 1:]))


def default_cache_dir() -> Path:
    return Path(os.environ.get("CVRUN_CACHE_DIR", Path.home() / ".cache" / "cvrun"))
