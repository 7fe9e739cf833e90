"""dataset.cache: decoded once (ram) or once per folder content (disk), the same pixels as decoding each read."""

import logging
import os
import shutil

import cv2
import numpy as np
import pytest

from cvrun.data import cache
from cvrun.data.cache import on_disk
from cvrun.data.samples import Sizing
from cvrun.data.sources import load_source
from cvrun.data.splits import build_splits
from cvrun.io import StorageError
from tests.conftest import full_disk_for, make_cfg, write_image_tree


def splits(root, cache, cache_dir=None, **dataset):
    return build_splits(make_cfg(dataset={"name": "imagefolder", "root": str(root), "image_size": 16, "cache": cache,
                                          "cache_dir": str(cache_dir) if cache_dir else None, **dataset}).dataset)


def pixels(samples):
    return np.stack([samples.image(i, 16) for i in range(len(samples))])


@pytest.fixture
def tree(tmp_path):
    return write_image_tree(tmp_path / "tree", {"cat": 8, "dog": 8}, size=20)


def test_ram_cache_holds_the_pixels_decoding_gives(tree):
    plain, cached = splits(tree, "none"), splits(tree, "ram")
    assert plain.train.images is None and cached.train.images is not None and cached.val.images is not None
    assert np.array_equal(pixels(plain.train), cached.train.images)
    assert np.array_equal(pixels(plain.test), cached.test.images)
    assert splits(tree, "auto").train.images is not None  # a small dataset fits: auto keeps it in memory


def test_disk_cache_is_reused_and_rebuilt_when_a_file_changes(tree, tmp_path):
    cache_dir = tmp_path / "cache"
    first = splits(tree, "disk", cache_dir)
    files = sorted(cache_dir.glob("*.npy"))
    assert [f.name.split("-")[:2] for f in files] == [["imagefolder", "test"], ["imagefolder", "train"]]
    assert np.array_equal(first.train.images, pixels(splits(tree, "none").train))
    stamps = {f: f.stat().st_mtime_ns for f in files}
    again = splits(tree, "disk", cache_dir, subset=10)  # another subset: the same cache serves it
    assert {f: f.stat().st_mtime_ns for f in sorted(cache_dir.glob("*.npy"))} == stamps
    assert len(again.train) + len(again.val) == 10
    changed = sorted((tree / "train" / "cat").iterdir())[0]
    cv2.imwrite(str(changed), np.zeros((20, 20, 3), np.uint8))
    os.utime(changed, ns=(1, 1))
    splits(tree, "disk", cache_dir)
    assert len(list(cache_dir.glob("imagefolder-train-*.npy"))) == 2  # a new key for the new content



def test_a_full_disk_under_the_cache_folder_is_one_error_naming_the_file(tree, tmp_path, monkeypatch):
    full_disk_for(monkeypatch, "cache-train")
    source = load_source(make_cfg(dataset={"name": "imagefolder", "root": str(tree)}).dataset)
    with pytest.raises(StorageError, match=rf"cannot write {tmp_path}/cache-train-16px-\w+\.npy: No space left"):
        on_disk(source.train, 16, tmp_path, "cache-train")


@pytest.mark.parametrize("memory, disk, chosen",
                         [(10**9, 10**9, "ram"), (10**4, 10**9, "disk"), (10**4, 10**4, "none")])
def test_auto_chooses_ram_else_disk_else_none_and_says_so(tree, tmp_path, monkeypatch, caplog, memory, disk, chosen):
    monkeypatch.setattr(cache, "available_memory", lambda: memory)
    monkeypatch.setattr(cache, "free_disk", lambda folder: disk)
    with caplog.at_level(logging.INFO, logger="cvrun"):
        data = splits(tree, "auto", tmp_path / "cache")
    decoded = 22 * 16 * 16 * 3  # 16 training and 6 test images, decoded at 16 px
    said = [record.getMessage() for record in caplog.records if "dataset.cache=auto" in record.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"dataset.cache=auto chose {chosen}: the decoded images take "
                                                 f"{decoded / 2**30:.2f} GB"), said
    held = {"ram": np.ndarray, "disk": np.memmap, "none": type(None)}[chosen]
    assert all(type(split.images) is held for split in (data.train, data.val, data.test))
    assert sorted(p.name.split("-")[1] for p in (tmp_path / "cache").glob("*.npy")) == (
        ["test", "train", "val"] if chosen == "disk" else [])
    if chosen != "none":
        assert np.array_equal(np.asarray(data.train.images), pixels(splits(tree, "none").train))



def test_free_memory_and_disk_are_measured(tmp_path):
    assert 0 < cache.available_memory() <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    free = cache.free_disk(tmp_path / "not" / "made" / "yet")  # the file system the folder would be on
    assert abs(free - shutil.disk_usage(tmp_path).free) < 2**30


def test_auto_puts_images_above_64_px_on_disk_when_they_do_not_fit_in_memory(tree, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(cache, "available_memory", lambda: 10**4)
    monkeypatch.setattr(cache, "free_disk", lambda folder: 10**12)
    monkeypatch.setattr(cache, "STREAM_CHUNK", 5)  # written in several chunks
    with caplog.at_level(logging.INFO, logger="cvrun"):
        data = build_splits(make_cfg(dataset={"name": "imagefolder", "root": str(tree), "image_size": 96,
                                              "cache": "auto", "cache_dir": str(tmp_path / "cache")}).dataset)
    assert "dataset.cache=auto chose disk" in caplog.text
    plain = build_splits(make_cfg(dataset={"name": "imagefolder", "root": str(tree), "image_size": 96,
                                           "cache": "none"}).dataset)
    assert len(data.train) == len(plain.train) == 14 and isinstance(data.train.images.buffer, np.memmap)
    assert all(np.array_equal(data.train.stored(i, 96), plain.train.stored(i, 96)) for i in range(14))


def test_a_full_disk_while_large_images_are_written_is_one_error_and_no_file(tree, tmp_path, monkeypatch):
    full_disk_for(monkeypatch, "photos-train")
    source = load_source(make_cfg(dataset={"name": "imagefolder", "root": str(tree)}).dataset)
    with pytest.raises(StorageError, match=rf"cannot write {tmp_path}/photos-train-109side-\w+\.npy: No space left"):
        on_disk(source.train.with_sizing(Sizing(96)), 96, tmp_path, "photos-train")
    assert list(tmp_path.glob("*photos-train*")) == []
