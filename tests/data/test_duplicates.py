"""Content digests, perceptual hashes and the nearest-hash search behind `cvrun check-data`."""

import hashlib
import time

import cv2
import numpy as np
import pytest

from cvrun.data import duplicates
from cvrun.data.duplicates import (HASH_BITS, NO_MATCH, array_facts, cached_file_facts, dct_matrix, encoded_facts,
                                   exact_groups, exact_matches, file_facts, hamming, nearest, perceptual_hashes)
from cvrun.io import file_sha256


def photo_like(seed: int, size: int = 32) -> np.ndarray:
    """An RGB image with a photo's spectrum (amplitude falling as 1 / frequency, random phases) and a colour tint:
    like photos, and unlike smooth blobs, its lowest frequencies stand clear of their median, so that the hash
    is as stable under re-encoding as it is on CIFAR-10's images."""
    rng = np.random.default_rng(seed)
    frequency = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.rfftfreq(size)[None, :])
    frequency[0, 0] = 1.0
    spectrum = (rng.normal(size=frequency.shape) + 1j * rng.normal(size=frequency.shape)) / frequency
    spectrum[0, 0] = 0.0
    luminance = np.fft.irfft2(spectrum, s=(size, size))
    luminance = (luminance - luminance.mean()) / luminance.std()
    image = 128 + 45 * luminance[..., None] * rng.uniform(0.6, 1.4, 3)
    return np.clip(image, 0, 255).astype(np.uint8)


def reference_phash(image: np.ndarray) -> int:
    """pHash as imagehash computes it, with OpenCV's own DCT: grey, 32x32, 8x8 lowest frequencies, above median."""
    grey = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(grey.astype(np.float32))[:8, :8].ravel()
    return int("".join("1" if bit else "0" for bit in low > np.median(low)), 2)


def test_the_dct_is_opencvs_and_the_hash_is_phash():
    x = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    assert np.allclose(dct_matrix(32) @ x @ dct_matrix(32).T, cv2.dct(x), atol=1e-4)
    images = [photo_like(seed, size) for seed, size in ((1, 32), (2, 32), (3, 96), (4, 57))]
    facts = array_facts(images)
    assert [int(h) for h in facts.hashes] == [reference_phash(image) for image in images]
    assert facts.heights.tolist() == [32, 32, 96, 57] and facts.readable.all()
    # 32 of the 64 frequencies lie above their median: every distance is even.
    assert (np.bitwise_count(facts.hashes) == HASH_BITS // 2).all()


def test_hashing_in_chunks_changes_nothing(monkeypatch):
    thumbnails = np.random.default_rng(1).integers(0, 256, (10, 32, 32)).astype(np.uint8)
    whole = perceptual_hashes(thumbnails)
    monkeypatch.setattr(duplicates, "HASH_CHUNK", 3)
    assert np.array_equal(perceptual_hashes(thumbnails), whole) and len(perceptual_hashes(thumbnails[:0])) == 0


def test_a_brightened_or_reencoded_copy_stays_near_and_another_image_does_not():
    images = [photo_like(seed) for seed in range(20)]
    brightened = [np.clip(image.astype(int) + 25, 0, 255).astype(np.uint8) for image in images]
    reencoded = [cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 60])[1], cv2.IMREAD_UNCHANGED)
                 for image in images]
    hashes, others = (array_facts(images).hashes, array_facts([photo_like(seed) for seed in range(100, 150)]).hashes)
    for copies in (brightened, reencoded):
        assert (np.bitwise_count(array_facts(copies).hashes ^ hashes) <= 4).all()
    assert hamming(hashes, others).min() > 6  # 50 other images: all far from the 20 (about 32 bits apart)


@pytest.mark.parametrize("same", [False, True])
@pytest.mark.parametrize("bits", [63, 5])  # 5: hashes 0-31, many at the same distance (ties go to the first)
def test_the_blocked_search_finds_what_comparing_all_pairs_finds(same, bits, monkeypatch):
    # Small blocks, so that the sets span several blocks with a ragged last one each way.
    monkeypatch.setattr(duplicates, "QUERY_BLOCK", 7)
    monkeypatch.setattr(duplicates, "REFERENCE_BLOCK", 11)
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 2 ** bits, 60, dtype=np.uint64)
    query = reference.copy() if same else rng.integers(0, 2 ** bits, 45, dtype=np.uint64)
    if not same and bits == 63:
        query[3] = reference[40] ^ np.uint64(0b101)  # two bits from reference 40, the nearest
    distances, indices = nearest(query, reference, same=same, workers=3)
    table = hamming(query, reference).astype(int)
    if same:
        np.fill_diagonal(table, 99)
    assert distances.tolist() == table.min(axis=1).tolist()
    assert indices.tolist() == table.argmin(axis=1).tolist()
    assert same or bits != 63 or (distances[3], indices[3]) == (2, 40)
    assert nearest(query[:1], reference[:0])[0].tolist() == [NO_MATCH]
    assert nearest(query[:1], query[:1], same=True)[1].tolist() == [-1]  # alone: nothing to be near


def test_fifty_thousand_by_ten_thousand_hashes_take_seconds():
    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 2 ** 63, 50_000, dtype=np.uint64), rng.integers(0, 2 ** 63, 10_000, dtype=np.uint64)
    started = time.perf_counter()
    distances, _ = nearest(test, train)
    seconds = time.perf_counter() - started
    assert seconds < 20, seconds  # about 1.5 s on 2 busy cores; comparing all at once needs 4 GB and minutes
    assert distances.max() < 32


def test_exact_groups_and_matches_by_digest():
    digests = np.array([b"a", b"b", b"a", b"", b"c", b"a", b"c", b""], dtype="S32")
    assert [g.tolist() for g in exact_groups(digests)] == [[0, 2, 5], [4, 6]]  # no digest (b""): no group
    assert exact_matches(np.array([b"c", b"x", b""], dtype="S32"), digests).tolist() == [4, -1, -1]


def test_files_are_hashed_by_their_bytes_and_unreadable_ones_marked(tmp_path):
    image = photo_like(7, 400)
    paths = [tmp_path / "a.png", tmp_path / "copy.png", tmp_path / "big.jpg", tmp_path / "broken.png",
             tmp_path / "missing.png"]
    cv2.imwrite(str(paths[0]), image)
    paths[1].write_bytes(paths[0].read_bytes())
    cv2.imwrite(str(paths[2]), cv2.resize(image, (800, 600)))  # decoded at 1/8 scale for the hash
    paths[3].write_bytes(b"\x89PNG not really")
    facts = file_facts([str(p) for p in paths])
    assert facts.readable.tolist() == [True, True, True, False, False]
    assert facts.digests[0] == bytes.fromhex(file_sha256(paths[0])) == facts.digests[1]
    assert facts.digests[3] == bytes.fromhex(file_sha256(paths[3])) and facts.digests[4] == b""
    assert (facts.heights.tolist(), facts.widths.tolist()) == ([400, 400, 600, 0, 0], [400, 400, 800, 0, 0])
    assert hamming(facts.hashes[:1], facts.hashes[2:3])[0, 0] <= 4  # the same picture, reduced decode and all


def test_encoded_images_held_in_memory_or_a_shard_are_hashed_by_their_bytes():
    image = photo_like(9, 300)
    blobs = [cv2.imencode(".jpg", image)[1].tobytes(), cv2.imencode(".png", image)[1].tobytes(), b"\xff\xd8 no JPEG"]

    def read(index: int) -> bytes:
        if index == len(blobs):
            raise OSError("the shard is gone")
        return blobs[index]

    facts = encoded_facts(len(blobs) + 1, read)
    assert facts.readable.tolist() == [True, True, False, False] and facts.heights.tolist() == [300, 300, 0, 0]
    assert [bytes(d) for d in facts.digests[:3]] == [hashlib.sha256(blob).digest().rstrip(b"\0") for blob in blobs]
    assert hamming(facts.hashes[:1], facts.hashes[1:2])[0, 0] <= 4  # JPEG at 1/8 scale, PNG in full: one picture


def test_the_disk_cache_gives_the_same_facts_without_reading_again(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), photo_like(8))
    first = cached_file_facts([str(path)], tmp_path / "cache", "tiny-train")
    monkeypatch.setattr(duplicates, "file_facts", lambda paths: pytest.fail("read again"))
    again = cached_file_facts([str(path)], tmp_path / "cache", "tiny-train")
    assert all(np.array_equal(getattr(first, key), getattr(again, key))
               for key in ("digests", "hashes", "heights", "widths", "readable"))
