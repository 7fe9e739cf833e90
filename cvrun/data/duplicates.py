"""Exact and near duplicates among a dataset's images: content digests, perceptual hashes, nearest-hash search.

Exact: two images with the same SHA-256 of their file's bytes (cvrun.io.file_sha256's digest), or of their
decoded pixels for sources held as arrays. Near: a 64-bit DCT perceptual hash (pHash, as Zauner 2010 and the
imagehash package define it): the image in grey, shrunk to 32x32, its 8x8 lowest 2-D DCT frequencies, one bit per
frequency set where it lies above their median. A brightness or contrast change leaves the bits alone (they move
the DC term and scale the others); a re-encoding, a small shift or resize flips a few. Two images are near
duplicates when their hashes differ in few bits (the Hamming distance); unrelated photos differ in about 32.

The search compares every query hash with every reference hash: an XOR and a bit count (np.bitwise_count) over
blocks small enough for the CPU's cache, on all cores (NumPy releases the GIL). 10,000 x 50,000 hashes take about
a second on one core.
"""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

HASH_SIDE = 32  # images are shrunk to this square in grey before the DCT
HASH_FREQUENCIES = 8  # the lowest 8 x 8 frequencies make the 64 bits
HASH_BITS = HASH_FREQUENCIES ** 2
NO_MATCH = 255  # the distance reported where a query has nothing to compare with
_JPEG_START = b"\xff\xd8"  # a JPEG's first bytes (its SOI marker), whatever the file's name
_REDUCED_COLOR = {8: cv2.IMREAD_REDUCED_COLOR_8, 4: cv2.IMREAD_REDUCED_COLOR_4, 2: cv2.IMREAD_REDUCED_COLOR_2}


@dataclass
class ImageFacts:
    """What the check knows of each image of one split, as arrays in the split's order."""

    digests: np.ndarray  # (N,) 'S32': SHA-256 of the file's bytes, or of the decoded pixels and their shape
    hashes: np.ndarray  # (N,) uint64 perceptual hashes (0 for an unreadable file)
    heights: np.ndarray  # (N,) int64 (0 for an unreadable file)
    widths: np.ndarray  # (N,) int64
    readable: np.ndarray  # (N,) bool

    def __len__(self) -> int:
        return len(self.digests)


def dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: D @ x is the DCT of a column x (cv2.dct's and scipy's norm='ortho')."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    matrix = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    matrix[0] /= np.sqrt(2.0)
    return matrix


_LOW_DCT = dct_matrix(HASH_SIDE)[:HASH_FREQUENCIES].astype(np.float32)


def grey_thumbnail(image: np.ndarray) -> np.ndarray:
    """An RGB (or grey) uint8 image as the HASH_SIDE x HASH_SIDE grey uint8 square the hash is taken on
    (area-averaged when shrinking, as imagehash's antialiased resize)."""
    grey = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    if grey.shape != (HASH_SIDE, HASH_SIDE):
        shrinking = grey.shape[0] >= HASH_SIDE and grey.shape[1] >= HASH_SIDE
        grey = cv2.resize(grey, (HASH_SIDE, HASH_SIDE), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return grey


# Thumbnails hashed at once: the float copies of 8192 of them take 32 MiB.
HASH_CHUNK = 8192


def perceptual_hashes(thumbnails: np.ndarray) -> np.ndarray:
    """64-bit pHashes of (N, 32, 32) grey thumbnails (uint8 or float): the 8x8 lowest DCT frequencies (D8 X D8^T,
    as two matrix products over a chunk of images), each bit set where a frequency lies above the median of the
    64, packed into one uint64 per image (frequencies in row-major order, the lowest the highest bit)."""
    if len(thumbnails) <= HASH_CHUNK:
        return _hash_chunk(np.asarray(thumbnails, dtype=np.float32))
    return np.concatenate([_hash_chunk(np.asarray(thumbnails[start:start + HASH_CHUNK], dtype=np.float32))
                           for start in range(0, len(thumbnails), HASH_CHUNK)])


def _hash_chunk(thumbnails: np.ndarray) -> np.ndarray:
    count = len(thumbnails)
    if count == 0:
        return np.zeros(0, dtype=np.uint64)
    rows = thumbnails.reshape(count * HASH_SIDE, HASH_SIDE) @ _LOW_DCT.T  # (N*32, 8): X D8^T, row by row
    columns = rows.reshape(count, HASH_SIDE, HASH_FREQUENCIES).transpose(0, 2, 1).reshape(-1, HASH_SIDE) @ _LOW_DCT.T
    low = columns.reshape(count, HASH_FREQUENCIES, HASH_FREQUENCIES).transpose(0, 2, 1).reshape(count, HASH_BITS)
    bits = low > np.median(low, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def hamming(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The bits in which each hash of `first` differs from each of `second`: an (len(first), len(second)) uint8."""
    return np.bitwise_count(first[:, None] ^ second[None, :]).astype(np.uint8)


# Block sizes of the search: 64 query x 8192 reference hashes (4 MiB of XOR results) stay in the cache; larger
# blocks ran 3x slower (memory-bound), smaller ones spend their time in Python.
QUERY_BLOCK, REFERENCE_BLOCK = 64, 8192


def nearest(query: np.ndarray, reference: np.ndarray, same: bool = False,
            workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each query hash, the smallest Hamming distance to a reference hash and that hash's index (the first
    of the nearest). `same`: query and reference are one set, and an image is not its own match. Queries with
    no reference to compare get NO_MATCH and index -1."""
    if same:
        return _nearest_within(query, workers)
    distances = np.full(len(query), NO_MATCH, dtype=np.uint8)
    indices = np.full(len(query), -1, dtype=np.int64)
    if len(query) == 0 or len(reference) == 0:
        return distances, indices

    def search(start: int, stop: int) -> None:
        block = _Block()
        for row in range(start, stop, QUERY_BLOCK):
            rows = min(QUERY_BLOCK, stop - row)
            for column in range(0, len(reference), REFERENCE_BLOCK):
                bits = block.distances(query, row, rows, reference, column)
                _improve(bits, distances[row:row + rows], indices[row:row + rows], column, axis=1)

    _in_chunks(search, len(query), workers)
    return distances, indices


def _nearest_within(hashes: np.ndarray, workers: int | None) -> tuple[np.ndarray, np.ndarray]:
    """nearest(hashes, hashes, same=True) comparing each pair once: only the blocks on and right of each row
    block are computed, and each improves both its rows' nearest and its columns'. The parts each task finds are
    merged at the end, the nearest and then the lowest index winning (as argmin over all would)."""
    count = len(hashes)
    parts = []

    def search(start: int, stop: int) -> None:
        block = _Block()
        row_best, row_at = np.full(stop - start, NO_MATCH, np.uint8), np.full(stop - start, -1, np.int64)
        column_best, column_at = np.full(count - start, NO_MATCH, np.uint8), np.full(count - start, -1, np.int64)
        for row in range(start, stop, QUERY_BLOCK):
            rows = min(QUERY_BLOCK, stop - row)
            for column in range(row, count, REFERENCE_BLOCK):
                bits = block.distances(hashes, row, rows, hashes, column)
                mine = np.arange(row, row + rows)
                inside = (mine >= column) & (mine < column + bits.shape[1])  # an image is not its own match
                bits[np.flatnonzero(inside), mine[inside] - column] = NO_MATCH
                _improve(bits, row_best[row - start:row - start + rows], row_at[row - start:row - start + rows],
                         column, axis=1)
                _improve(bits, column_best[column - start:column - start + bits.shape[1]],
                         column_at[column - start:column - start + bits.shape[1]], row, axis=0)
        parts.append((start, row_best, row_at))
        parts.append((start, column_best, column_at))

    _in_chunks(search, count, workers)
    unmatched = np.iinfo(np.int64).max
    keys = np.full(count, unmatched, dtype=np.int64)  # distance x (count + 1) + index: one order for both
    for start, best, at in parts:
        part = np.where(at >= 0, best.astype(np.int64) * (count + 1) + at, unmatched)
        np.minimum(keys[start:start + len(part)], part, out=keys[start:start + len(part)])
    found = keys != unmatched
    distances = np.where(found, keys // (count + 1), NO_MATCH).astype(np.uint8)
    return distances, np.where(found, keys % (count + 1), -1)


class _Block:
    """One thread's buffers for a block of distances."""

    def __init__(self) -> None:
        self.xor = np.empty((QUERY_BLOCK, REFERENCE_BLOCK), dtype=np.uint64)
        self.bits = np.empty((QUERY_BLOCK, REFERENCE_BLOCK), dtype=np.uint8)

    def distances(self, query: np.ndarray, row: int, rows: int, reference: np.ndarray, column: int) -> np.ndarray:
        """The (rows, columns) distances of query[row:row + rows] to the reference from `column` on, in bits."""
        columns = min(REFERENCE_BLOCK, len(reference) - column)
        np.bitwise_xor(query[row:row + rows, None], reference[None, column:column + columns],
                       out=self.xor[:rows, :columns])
        return np.bitwise_count(self.xor[:rows, :columns], out=self.bits[:rows, :columns])


def _improve(bits: np.ndarray, best: np.ndarray, where: np.ndarray, offset: int, axis: int) -> None:
    """Lower `best` (and set `where`, plus `offset`) where a block of distances holds a nearer hash along `axis`
    (1: each row's, 0: each column's); a tie keeps the earlier. Few improve after the first blocks, so the argmin
    is taken of those only."""
    better = np.flatnonzero(bits.min(axis=axis) < best)
    if len(better):
        chosen = bits[better] if axis == 1 else bits[:, better]
        closest = chosen.argmin(axis=axis)
        best[better] = chosen.min(axis=axis)
        where[better] = closest + offset


def _in_chunks(search: Callable[[int, int], None], count: int, workers: int | None) -> None:
    """search(start, stop) over `count` rows cut in chunks (four per worker: the later chunks of a triangle are
    shorter), on all cores (NumPy releases the GIL)."""
    threads = workers or os.cpu_count() or 1
    chunk = max(QUERY_BLOCK, -(-count // (4 * threads)))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda start: search(start, min(start + chunk, count)), range(0, count, chunk)))


def _on_all_cores(work: Callable[[int], None], count: int) -> None:
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # OpenCV and hashlib release the GIL
        list(pool.map(work, range(count), chunksize=256))


def _jpeg_reduction(data: bytes) -> tuple[int, tuple[int, int] | None]:
    """(factor, (height, width)): the largest 1/2, 1/4 or 1/8 scale a JPEG decodes at (libjpeg's DCT scaling)
    that keeps its shorter side at HASH_SIDE or more, with the full size its header gives."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
    except (OSError, ValueError):
        return 1, None
    factor = next((f for f in (8, 4, 2) if min(height, width) // f >= HASH_SIDE), 1)
    return factor, (height, width)


def file_facts(paths: Sequence[str]) -> ImageFacts:
    """encoded_facts of image files: one read of each (a file that cannot be opened is unreadable)."""
    def read(index: int) -> bytes:
        with open(paths[index], "rb") as handle:
            return handle.read()

    return encoded_facts(len(paths), read)


def encoded_facts(count: int, read: Callable[[int], bytes]) -> ImageFacts:
    """Digest (of the encoded bytes), perceptual hash and size of `count` encoded images, `read(index)` giving each
    one's bytes (an OSError: unreadable), on all cores. Bytes that do not decode are unreadable too. Large JPEGs are
    decoded at a reduced scale (the hash needs 32 px)."""
    digests = np.zeros(count, dtype="S32")
    thumbnails = np.zeros((count, HASH_SIDE, HASH_SIDE), dtype=np.uint8)
    sizes = np.zeros((count, 2), dtype=np.int64)
    readable = np.zeros(count, dtype=bool)

    def fill(index: int) -> None:
        try:
            data = read(index)
        except OSError:
            return
        digests[index] = hashlib.sha256(data).digest()
        factor, size = _jpeg_reduction(data) if data.startswith(_JPEG_START) else (1, None)
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED_COLOR.get(factor, cv2.IMREAD_COLOR))
        if bgr is None:
            return
        sizes[index] = size if size is not None else bgr.shape[:2]
        thumbnails[index] = grey_thumbnail(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        readable[index] = True

    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # the report names the unreadable files
    try:
        _on_all_cores(fill, count)
    finally:
        cv2.utils.logging.setLogLevel(level)
    hashes = perceptual_hashes(thumbnails)
    hashes[~readable] = 0
    return ImageFacts(digests, hashes, sizes[:, 0], sizes[:, 1], readable)


def cached_file_facts(paths: Sequence[str], folder: Path, name: str) -> ImageFacts:
    """file_facts, kept in `folder` (dataset.cache=disk's) under a key of the files' paths, sizes and modification
    times: a second check of unchanged files reads no image."""
    from cvrun.data.cache import content_key
    from cvrun.io import atomic_write_bytes, make_folder

    path = Path(folder) / f"check-{name}-{content_key(np.asarray(paths), HASH_SIDE, 'phash digests sizes')}.npz"
    if path.is_file():
        with np.load(path) as saved:
            return ImageFacts(**{key: saved[key] for key in saved.files})
    facts = file_facts(paths)
    make_folder(path.parent)
    buffer = io.BytesIO()
    np.savez(buffer, **asdict(facts))
    atomic_write_bytes(path, buffer.getvalue())
    return facts


def array_facts(images: Sequence[np.ndarray]) -> ImageFacts:
    """Digest (of the pixels and their shape), perceptual hash and size of each decoded image (uint8 HxWxC or
    HxW): sources held as arrays, which have no files."""
    count = len(images)
    digests = np.zeros(count, dtype="S32")
    thumbnails = np.zeros((count, HASH_SIDE, HASH_SIDE), dtype=np.uint8)
    sizes = np.zeros((count, 2), dtype=np.int64)

    def read(index: int) -> None:
        image = np.ascontiguousarray(images[index])
        digests[index] = hashlib.sha256(repr(image.shape).encode() + image.tobytes()).digest()
        sizes[index] = image.shape[:2]
        thumbnails[index] = grey_thumbnail(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image)

    _on_all_cores(read, count)
    return ImageFacts(digests, perceptual_hashes(thumbnails), sizes[:, 0], sizes[:, 1], np.ones(count, dtype=bool))


def exact_groups(digests: np.ndarray) -> list[np.ndarray]:
    """Indices of the images that share a digest, one array per digest held by two or more (files that could
    not be opened have no digest and join no group)."""
    known = np.flatnonzero(digests != b"")
    if len(known) < 2:
        return []
    order = known[np.argsort(digests[known], kind="stable")]
    ordered = digests[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(order)]
    return [np.sort(order[s:e]) for s, e in zip(starts, ends) if e - s > 1]


def exact_matches(query: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """For each query digest, the index of the first reference image with the same digest, else -1."""
    matches = np.full(len(query), -1, dtype=np.int64)
    if len(query) == 0 or len(reference) == 0:
        return matches
    order = np.argsort(reference, kind="stable")
    ordered = reference[order]
    at = np.clip(np.searchsorted(ordered, query), 0, len(ordered) - 1)
    hit = (ordered[at] == query) & (query != b"")
    matches[hit] = order[at[hit]]
    return matches
