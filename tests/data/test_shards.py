"""dataset=shards: tar shards indexed once and read by random access give the images written, an exact seeded
epoch split over ranks and workers, training that learns and resumes exactly; `cvrun shard` writes them from a
tree or a CSV; bad shards are one line each."""

import csv
import io
import os
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cvrun import parallel
from cvrun.commands.train import start_run
from cvrun.data import shards
from cvrun.data.loaders import make_loader
from cvrun.data.samples import Samples
from cvrun.data.sources import load_source
from cvrun.data.splits import build_splits
from cvrun.engine.rundir import RunFolder
from cvrun.errors import UserError
from tests.conftest import cli, interrupt_after_epoch, make_cfg, write_image_tree

CLASSES = {"cat": 14, "dog": 13, "frog": 13}


def write_tar(path: Path, samples: list[tuple[str, np.ndarray, int]]) -> Path:
    """A tar written with tarfile alone (not cvrun's writer): <key>.png and <key>.cls per sample."""
    with tarfile.open(path, "w") as tar:
        for key, image, label in samples:
            for name, data in ((f"{key}.png", cv2.imencode(".png", image[..., ::-1])[1].tobytes()),
                               (f"{key}.cls", str(label).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def images_of(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(6, 15)), int(rng.integers(6, 15)), 3), dtype=np.uint8)
            for _ in range(count)]


def shards_cfg(train: str, test: str | None = None, **dataset):
    return make_cfg(dataset={"name": "shards", "shards": train, "test_shards": test, "image_size": 12, "cache": "none",
                             **dataset}).dataset


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """An image-folder tree of 40 training images of 3 classes and `cvrun shard`'s shards of it, 10 to a tar."""
    folder = tmp_path_factory.mktemp("shards")
    tree = write_image_tree(folder / "tree", CLASSES, test_per_class=4)
    result = cli("shard", str(tree), str(folder / "out"), "--per-shard", "10", cwd=folder)
    assert result.returncode == 0, result.stderr
    return tree, folder / "out", result.stdout


def test_index_and_random_access_give_the_images_written(tmp_path, monkeypatch):
    images = images_of(12, 0)
    samples = [(f"part/{i:03d}", image, i % 3) for i, image in enumerate(images)]
    first = write_tar(tmp_path / "train-0.tar", samples[:7])
    write_tar(tmp_path / "train-1.tar", samples[7:])
    cfg = shards_cfg(str(tmp_path / "train-{0..1}.tar"), str(first), cache_dir=str(tmp_path / "cache"))
    source = load_source(cfg)
    train = source.test  # the first shard again: its samples in the tar's order
    assert list(train.ids) == [f"train-0.tar/part/{i:03d}" for i in range(7)]
    assert train.labels.tolist() == [i % 3 for i in range(7)] and source.class_names == ["0", "1", "2"]
    for i in (6, 0, 3):  # any order: each a seek and a read
        assert np.array_equal(train.images[i], images[i])
    # Indexed once: a second load reads the cached index; a changed shard is indexed again.
    monkeypatch.setattr(shards, "read_index", lambda path: pytest.fail(f"indexed {path} again"))
    again = load_source(cfg)
    assert np.array_equal(again.train.images[11], images[11]) and len(again.train) == 12
    # A regime joining two sets (pseudo-labels, the pool): the images of both, from their own tars.
    both = Samples.concat(source.test.take(np.array([2, 5])), again.train.take(np.array([11, 0])), 12)
    assert all(np.array_equal(both.images[i], images[k]) for i, k in enumerate((2, 5, 11, 0)))
    write_tar(first, samples[:5])
    os.utime(first, ns=(1, 1))
    monkeypatch.undo()
    assert len(load_source(cfg).test) == 5


def test_an_epoch_sees_each_image_once_across_ranks_and_workers(written, monkeypatch):
    _, out, _ = written
    data = build_splits(shards_cfg(str(out / "train-{000000..000003}.tar"), str(out / "test-000000.tar"),
                                   val_fraction=0.0))
    assert len(data.train) == 40
    seen = []
    for rank, workers in ((0, 2), (1, 0)):  # torchrun's two processes, one with two loader workers
        monkeypatch.setattr(parallel, "world_size", lambda: 2)
        monkeypatch.setattr(parallel, "rank", lambda rank=rank: rank)
        loader = make_loader(data.train, 12, 8, train=True, seed=3, num_workers=workers, shard=True,
                             extras={"index": torch.arange(40)})
        loader.sampler.set_epoch(1)
        for images, labels in loader:
            seen += labels["index"].tolist()
            for image, index in zip(images, labels["index"].tolist()):
                assert torch.equal(image, torch.from_numpy(data.train.image(index, 12).transpose(2, 0, 1).copy()))
    assert sorted(seen) == list(range(40))


def test_training_on_shards_learns_and_a_resumed_run_ends_as_an_uninterrupted_one(written, tmp_path, monkeypatch):
    _, out, _ = written

    def run(name: str, **trainer):
        cfg = make_cfg(dataset={"name": "shards", "shards": str(out / "train-{000000..000003}.tar"),
                                "test_shards": str(out / "test-{000000..000001}.tar"), "image_size": 12,
                                "cache": "none", "val_fraction": 0.0},
                       model={"name": "linear"}, aug={"name": "none", "base": False}, optim={"lr": 0.05},
                       trainer={"epochs": 5, "batch_size": 8, "progress": False, "deterministic": True, **trainer})
        return start_run(cfg, RunFolder(tmp_path / name))

    whole = run("whole")
    assert whole["status"] == "completed" and whole["test_acc1"] > 80, whole  # chance 33
    assert whole["splits"]["test"]["per_class"] == {"cat": 4, "dog": 4, "frog": 4}
    interrupt_after_epoch(monkeypatch, 2)
    with pytest.raises(SystemExit):
        run("cut")
    monkeypatch.undo()
    resumed = run("cut", resume=str(tmp_path / "cut"))
    rows = [list(csv.DictReader((tmp_path / name / "metrics.csv").open())) for name in ("whole", "cut")]
    timing = ("epoch_seconds", "train_images_per_second")
    assert [{k: v for k, v in row.items() if k not in timing} for row in rows[1]] == \
           [{k: v for k, v in row.items() if k not in timing} for row in rows[0]]
    assert resumed["test_acc1"] == whole["test_acc1"]


def test_shard_writes_a_tree_or_a_csv_with_the_same_class_counts(written, tmp_path):
    tree, out, printed = written
    assert (out / "classes.txt").read_text().split() == list(CLASSES)
    assert "'dataset.shards=" in printed and str(out / "train-{000000..000003}.tar") in printed
    source = load_source(shards_cfg(str(out / "train-{000000..000003}.tar"), str(out / "test-{000000..000001}.tar")))
    assert source.class_names == list(CLASSES)
    assert np.bincount(source.train.labels).tolist() == list(CLASSES.values())
    assert np.bincount(source.test.labels).tolist() == [4, 4, 4]
    # The same files, byte for byte; shuffled across the shards (every shard holds more than one class).
    originals = sorted((tree / "train").rglob("*.png"))
    assert sorted(source.train.images.encoded(i) for i in range(40)) == sorted(p.read_bytes() for p in originals)
    assert len(set(source.train.labels[:10].tolist())) > 1
    rows = "".join(f"{p.relative_to(tree)},{p.parent.name}\n" for p in originals)
    (tree / "labels.csv").write_text("path,label\n" + rows)
    result = cli("shard", str(tree / "labels.csv"), str(tmp_path / "csv"), "dataset.test_fraction=0.25", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    from_csv = load_source(shards_cfg(str(tmp_path / "csv/train-000000.tar"), str(tmp_path / "csv/test-000000.tar")))
    assert (np.bincount(from_csv.train.labels) + np.bincount(from_csv.test.labels)).tolist() == list(CLASSES.values())
    again = cli("shard", str(tree), str(out), cwd=tmp_path)
    assert again.returncode == 2 and "holds tar files already" in again.stderr


def test_bad_shards_are_one_line_each(tmp_path):
    images = images_of(4, 1)
    write_tar(tmp_path / "good.tar", [(f"{i}", image, i % 2) for i, image in enumerate(images)])
    with tarfile.open(tmp_path / "no_cls.tar", "w") as tar:
        tar.add(write_tar(tmp_path / "inner.tar", []), arcname="0.png")
    write_tar(tmp_path / "range.tar", [("0", images[0], 0), ("1", images[1], 5)])
    (tmp_path / "classes.txt").write_text("a\nb\n")
    (tmp_path / "one.txt").write_text("1\n")
    for name, cls in (("broken", "one.txt"), ("named", "classes.txt")):
        with tarfile.open(tmp_path / f"{name}.tar", "w") as tar:
            tar.add(tmp_path / "good.tar", arcname="0.png")  # not a PNG
            tar.add(tmp_path / cls, arcname="0.cls")
    for cfg, message in (
            (shards_cfg(str(tmp_path / "train-{0..3}.tar")), "no file"),
            (shards_cfg(str(tmp_path / "no_cls.tar")), "has no .cls members"),
            (shards_cfg(str(tmp_path / "good.tar"), str(tmp_path / "range.tar")),
             "range.tar/1.cls holds class 5, out of range for the 2 classes of"),
            (shards_cfg(str(tmp_path / "range.tar")), "range.tar/1.cls holds class 5"),
            (shards_cfg(str(tmp_path / "named.tar")), r"named.tar: 0.cls holds 'a\\nb', not a class index")):
        with pytest.raises(UserError, match=message):
            load_source(cfg)
    broken = load_source(shards_cfg(str(tmp_path / "broken.tar"), str(tmp_path / "good.tar"))).train
    with pytest.raises(UserError, match=rf"cannot decode the image at byte \d+ of {tmp_path}/broken.tar; "):
        broken.image(0, 12)
    # Found before the run folder is made.
    result = cli("train", "dataset=shards", f"dataset.shards={tmp_path}/good.tar",
                 f"dataset.test_shards={tmp_path}/range.tar", "model=linear", "trainer.epochs=1",
                 "trainer.progress=false", cwd=tmp_path)
    assert result.returncode == 2 and "out of range" in result.stderr and not (tmp_path / "outputs").exists()


def test_without_webdataset_shards_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "webdataset", None)  # import webdataset raises ImportError
    with pytest.raises(UserError, match=r'need the webdataset package: pip install "cvrun\[shards\]"'):
        load_source(shards_cfg(str(tmp_path / "train-{0..1}.tar")))

