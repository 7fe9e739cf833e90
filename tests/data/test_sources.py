"""Each dataset source: torchvision's formats, image-folder trees, the generated shapes."""

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets.cifar

from cvrun.data import shapes
from cvrun.data.sources import count_classes, load_source
from cvrun.errors import UserError
from tests.conftest import SHARED_CIFAR10, make_cfg, needs_cifar10, write_image_tree


def write_cifar10_batches(root: Path, per_batch: int = 4) -> np.ndarray:
    """CIFAR-10's python pickle format: 5 train batches, a test batch, batches.meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    first_image = None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8)
        first_image = data[0] if first_image is None else first_image
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": data, "labels": list(np.arange(per_batch) % 10)}, handle)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                     "ship", "truck"]}, handle)
    return first_image


def test_cifar10_through_torchvisions_loader(tmp_path, monkeypatch):
    first = write_cifar10_batches(tmp_path)
    # The files are ours, so their md5 sums differ from the real release's.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    source = load_source(make_cfg(dataset={"name": "cifar10", "root": str(tmp_path), "download": False}).dataset)
    assert len(source.train) == 20 and len(source.test) == 4
    assert source.class_names[0] == "airplane"
    image = source.train.image(0, 32)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert np.array_equal(image, first.reshape(3, 32, 32).transpose(1, 2, 0))


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_formats_through_torchvisions_loader(tmp_path, name, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for prefix, count in (("train", 6), ("t10k", 3)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(count) % 10)
    source = load_source(make_cfg(dataset={"name": name, "root": str(tmp_path), "download": False,
                                           "image_size": 28}).dataset)
    assert len(source.train) == 6 and len(source.test) == 3
    image = source.train.image(0, 28)
    assert image.shape == (28, 28, 3)
    assert np.array_equal(image[:, :, 0], image[:, :, 2])  # grey made 3-channel


def test_missing_torchvision_dataset_names_the_folder_and_the_way_out(tmp_path):
    cfg = make_cfg(dataset={"name": "cifar10", "root": str(tmp_path / "nowhere"), "download": False})
    with pytest.raises(UserError) as err:
        load_source(cfg.dataset)
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message and "dataset.root" in message
    assert "\n" not in message


def test_torchvision_name_accepts_an_image_folder_tree(image_tree):
    source = load_source(make_cfg(dataset={"name": "cifar10", "root": str(image_tree)}).dataset)
    assert source.class_names == ["cat", "dog", "frog"]
    assert len(source.train) == 30 and len(source.test) == 9
    assert source.train.images is None  # decoded lazily from files


def test_imagefolder_resizes_and_makes_grey_three_channel(tmp_path):
    root = write_image_tree(tmp_path / "grey", {"a": 2, "b": 2}, size=20, grey=True)
    cfg = make_cfg(dataset={"name": "imagefolder", "root": str(root), "image_size": 16})
    source = load_source(cfg.dataset)
    image = source.train.image(0, 16)
    assert image.shape == (16, 16, 3)
    assert count_classes(cfg.dataset) == 2


@needs_cifar10
def test_real_cifar10_tree():
    source = load_source(make_cfg(dataset={"name": "cifar10", "root": str(SHARED_CIFAR10)}).dataset)
    assert source.class_names == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                  "ship", "truck"]
    assert len(source.train) == 50000 and len(source.test) == 10000
    assert np.bincount(source.test.labels).tolist() == [1000] * 10
    image = source.test.image(0, 32)
    assert image.shape == (32, 32, 3) and image.std() > 5


def test_shapes_are_generated_balanced_and_reproducible():
    images, labels = shapes.generate(50, 32, seed=3)
    again, _ = shapes.generate(50, 32, seed=3)
    assert images.shape == (50, 32, 32, 3) and np.array_equal(images, again)
    assert np.bincount(labels).tolist() == [10] * len(shapes.CLASSES)
    source = load_source(make_cfg(dataset={"name": "shapes", "train_size": 20, "test_size": 10,
                                           "image_size": 32}).dataset)
    assert len(source.train) == 20 and source.class_names == shapes.CLASSES


def test_unreadable_image_tree_is_a_user_error(image_tree, monkeypatch):
    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", refuse)  # as a folder without read access does (root reads every folder)
    cfg = make_cfg(dataset={"name": "imagefolder", "root": str(image_tree)}).dataset
    with pytest.raises(UserError, match=r"cannot be read \(Permission denied: .*train\); give this user read"):
        load_source(cfg)


def layout_cfg(root: Path, **dataset):
    return make_cfg(dataset={"name": "imagefolder", "root": str(root), **dataset}).dataset


def test_a_tree_with_train_and_val_uses_val_as_the_held_out_split(tmp_path, caplog):
    """ImageNet's layout, and PyTorch's transfer-learning tutorial's hymenoptera_data."""
    tree = write_image_tree(tmp_path / "hymenoptera", {"ants": 4, "bees": 5}, test_per_class=2)
    (tree / "test").rename(tree / "val")
    with caplog.at_level("INFO", logger="cvrun"):
        source = load_source(layout_cfg(tree))
    assert source.class_names == ["ants", "bees"] and len(source.train) == 9 and len(source.test) == 4
    assert source.val is None and "has no test/: val/ is the held-out test split" in caplog.text


def test_a_tree_with_train_val_and_test_validates_on_val(tmp_path):
    from cvrun.data.splits import build_splits

    tree = write_image_tree(tmp_path / "tree", {"cat": 6, "dog": 6}, test_per_class=3)
    shutil.copytree(tree / "test", tree / "val")
    (tree / "val" / "cat" / "0000.png").unlink()
    data = build_splits(layout_cfg(tree, val_fraction=0.5))
    assert len(data.train) == 12 and len(data.val) == 5 and len(data.test) == 6  # val/ instead of val_fraction
    assert list(data.val.ids[:2]) == ["val/cat/0001.png", "val/cat/0002.png"]


def test_split_folders_can_be_named(tmp_path):
    tree = write_image_tree(tmp_path / "tree", {"cat": 3, "dog": 3})
    (tree / "train").rename(tree / "training")
    (tree / "test").rename(tree / "holdout")
    source = load_source(layout_cfg(tree, train_dir="training", test_dir="holdout"))
    assert len(source.train) == 6 and len(source.test) == 6
    with pytest.raises(UserError, match="dataset.test_dir=nope: .*/nope is not a folder"):
        load_source(layout_cfg(tree, train_dir="training", test_dir="nope"))
