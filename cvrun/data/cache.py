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
- `auto` (default): chosen by size and free memory, and said in train.log with
  the figures: `ram` when the decoded images of the splits a run uses (images x
  stored size^2 x 3 bytes) take at most half of the memory available now
  (psutil, else /proc/meminfo's MemAvailable), else `disk` when they take at most
  half of the cache folder's free space (those splits decoded into it, straight
  into the file, images above 64 px a chunk at a time: building it holds no more
  in memory than the OS's page cache and a chunk), else `none`. Sources with no
  files to decode (arrays, shards) cache nothing.
- `none`: each image is decoded from its file every time it is read.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from cvrun.data.samples import RaggedImages, Samples, decode
from cvrun.io import atomic_write_bytes, replaced_atomically

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


# Shares of the memory available, and of the cache folder's free space, that dataset.cache=auto may fill.
RAM_SHARE = 0.5
DISK_SHARE = 0.5


def decoded_bytes(samples: list[Samples | None], size: int) -> int:
    """What the images held as files would take decoded (arrays and shards' images are held already)."""
    files = [s for s in samples if s is not None and s.images is None]
    return int(sum(len(s) * _stored_bytes(s, size) for s in files))


def available_memory() -> int:
    """Bytes of memory available to a new allocation without swapping: psutil's figure, else the kernel's
    MemAvailable, else the physical memory."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def free_disk(folder: Path) -> int:
    """Free bytes on the file system that holds (or will hold) `folder`."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    return shutil.disk_usage(existing).free


def fits_in_ram(samples: list[Samples | None], size: int) -> bool:
    return decoded_bytes(samples, size) <= RAM_SHARE * available_memory()


def auto_mode(samples: list[Samples | None], size: int, folder: Path) -> str:
    """dataset.cache=auto's choice for the splits a run uses, said in one line of the log with its figures."""
    needed = decoded_bytes(samples, size)
    if needed == 0:
        return "none"
    memory, disk = available_memory(), free_disk(folder)
    mode = "ram" if needed <= RAM_SHARE * memory else "disk" if needed <= DISK_SHARE * disk else "none"
    log.info("dataset.cache=auto chose %s: the decoded images take %s; %s of memory available (ram up to %d%%), "
             "%s free in the cache folder %s (disk up to %d%%)", mode, _gigabytes(needed), _gigabytes(memory),
             RAM_SHARE * 100, _gigabytes(disk), folder, DISK_SHARE * 100)
    return mode


def _gigabytes(count: float) -> str:
    return f"{count / 2**30:.2f} GB"


def hold(splits: list[Samples | None], cfg: Any) -> list[Samples | None]:
    """The splits a run uses as dataset.cache holds them: decoded into memory (ram), or into the disk cache where
    auto chooses it (cache=disk caches the whole source folder before the splits are drawn), or as they are."""
    mode = auto_mode(splits, cfg.image_size, cache_folder(cfg)) if cfg.cache == "auto" else cfg.cache
    if mode == "ram":
        return [in_ram(samples, cfg.image_size) for samples in splits]
    if mode == "disk" and cfg.cache == "auto":
        return [None if samples is None else on_disk(samples, cfg.image_size, cache_folder(cfg), f"{cfg.name}-{name}")
                for name, samples in zip(("train", "val", "test", "unlabeled"), splits)]
    return splits


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


def _decode_into(path: Path, paths: np.ndarray, size: int) -> None:
    """Every file decoded straight into an .npy file (a memory map written in place, then renamed into place):
    building the cache holds no more in memory than the page cache, however many images there are."""
    with replaced_atomically(path) as tmp:
        _fill_file(tmp, paths, size)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())


def _fill_file(file: str, paths: np.ndarray, size: int) -> None:
    """The images decoded into the .npy file `file` (its memory map is released on return)."""
    images = np.lib.format.open_memmap(file, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))

    def fill(index: int) -> None:
        images[index] = decode(paths[index], size)

    _on_all_cores(fill, len(paths))
    images.flush()


# Images decoded at once while large ones are written into the disk cache (a chunk of photos stored at 256 x 341:
# 67 MB in memory).
STREAM_CHUNK = 256


def _flat_header(length: int) -> bytes:
    """The .npy header of a flat uint8 array of `length` bytes: 128 bytes for any length up to 10^40 (numpy pads
    headers to a multiple of 64), so it can be written last, over a placeholder of that size."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": (length,)})
    return buffer.getvalue()


_FLAT_HEADER = len(_flat_header(0))


def _decode_stored_into(path: Path, samples: Samples, size: int) -> np.ndarray:
    """Images above 64 px at their stored resolution, written a chunk at a time into a flat uint8 .npy file (renamed
    into place when whole): building the cache holds one chunk in memory. Returns the index: each image's start
    in the flat array, height and width."""
    shapes = []
    with replaced_atomically(path) as tmp, open(tmp, "wb") as handle:
        handle.write(bytes(_FLAT_HEADER))
        for first in range(0, len(samples), STREAM_CHUNK):
            chunk: list = [None] * min(STREAM_CHUNK, len(samples) - first)

            def fill(index: int) -> None:
                chunk[index] = np.ascontiguousarray(samples.stored(first + index, size))

            _on_all_cores(fill, len(chunk))
            for image in chunk:
                handle.write(image.data)
                shapes.append(image.shape[:2])
        header = _flat_header(handle.tell() - _FLAT_HEADER)
        if len(header) != _FLAT_HEADER:
            raise RuntimeError(f"a .npy header of {len(header)} bytes where {_FLAT_HEADER} were kept")
        handle.seek(0)
        handle.write(header)
        handle.flush()
        os.fsync(handle.fileno())
    shapes_array = np.asarray(shapes, dtype=np.int64).reshape(-1, 2)
    sizes = shapes_array.prod(axis=1) * 3
    return np.concatenate([(np.cumsum(sizes) - sizes)[:, None], shapes_array], axis=1)


def on_disk(samples: Samples, size: int, cache_dir: Path, name: str) -> Samples:
    """`samples` with its images read from (or first decoded into) the disk cache."""
    if samples.images is not None:
        return samples
    sizing = samples.sizing_for(size)
    if sizing.small:
        path = cache_dir / f"{name}-{size}px-{content_key(samples.paths, size)}.npy"
        if not path.is_file():
            log.info("decoding %d images into the cache %s", len(samples), path)
            _decode_into(path, samples.paths, size)
        return replace(samples, images=np.load(path, mmap_mode="r"))
    key = content_key(samples.paths, size, f"stored {sizing.stored_side} {sizing.interpolation}")
    pixels = cache_dir / f"{name}-{sizing.stored_side}side-{key}.npy"
    index = pixels.with_name(pixels.stem + "-index.npy")
    if not (pixels.is_file() and index.is_file()):
        log.info("decoding %d images at a shorter side of at most %d px into the cache %s", len(samples),
                 sizing.stored_side, pixels)
        _save(index, _decode_stored_into(pixels, samples, size))
    starts_and_shapes = np.load(index)
    return replace(samples, images=RaggedImages(np.load(pixels, mmap_mode="r"), starts_and_shapes[:, 0],
                                                starts_and_shapes[:, 1:]))


def default_cache_dir() -> Path:
    return Path(os.environ.get("CVRUN_CACHE_DIR", Path.home() / ".cache" / "cvrun"))


def cache_folder(cfg: Any) -> Path:
    """dataset.cache_dir, else the default."""
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
