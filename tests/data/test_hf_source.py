"""dataset=hf: a save_to_disk folder or parquet files give the images, labels and classes an image-folder tree of
the same images gives; split names, held-out test rows, string labels, large images kept aspect-true; bad input
refused in one line."""

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cvrun.commands.train import start_run
from cvrun.data.sources import load_source
from cvrun.data.splits import build_splits
from cvrun.engine.rundir import RunFolder
from cvrun.errors import UserError
from tests.conftest import cli, make_cfg, write_image_tree

datasets = pytest.importorskip("datasets")
CLASSES = ["cat", "dog", "frog"]


def tree_split(tree: Path, split: str) -> dict:
    """The PNG bytes and label index of every image of a tree's split, in the tree's listing order."""
    files = sorted((tree / split).glob("*/*.png"))
    return {"image": [{"bytes": f.read_bytes(), "path": None} for f in files],
            "label": [CLASSES.index(f.parent.name) for f in files]}


def features(label=None):
    return datasets.Features({"image": datasets.Image(), "label": label or datasets.ClassLabel(names=CLASSES)})


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return write_image_tree(tmp_path_factory.mktemp("hf") / "tree", dict.fromkeys(CLASSES, 12))


@pytest.fixture(scope="module")
def saved(tree) -> Path:
    """The tree as a DatasetDict written by save_to_disk: train and test splits, a ClassLabel."""
    folder = tree.parent / "saved"
    datasets.DatasetDict({split: datasets.Dataset.from_dict(tree_split(tree, split), features=features())
                          for split in ("train", "test")}).save_to_disk(str(folder))
    return folder


def hf_cfg(**dataset):
    return make_cfg(dataset={"name": "hf", "image_size": 12, **dataset}).dataset


def test_a_saved_dataset_gives_the_trees_images_labels_and_classes(tree, saved):
    from_hf = load_source(hf_cfg(path=str(saved)))
    from_tree = load_source(make_cfg(dataset={"name": "imagefolder", "root": str(tree), "image_size": 12}).dataset)
    assert from_hf.class_names == from_tree.class_names == CLASSES
    for split in ("train", "test"):
        hf, files = getattr(from_hf, split), getattr(from_tree, split)
        assert hf.labels.tolist() == files.labels.tolist()
        assert all(np.array_equal(hf.image(i, 12), files.image(i, 12)) for i in range(len(files)))
    assert from_hf.train.ids[0] == "train/0" and from_hf.val is None
    # The semi-supervised pool and validation share, as for any source; the record's fingerprints are stable.
    settings = {"path": str(saved), "labeled_per_class": 4, "val_fraction": 0.25}
    splits = build_splits(hf_cfg(**settings))
    assert (len(splits.train), len(splits.val), len(splits.unlabeled)) == (9, 3, 24)
    assert splits.record == build_splits(hf_cfg(**settings)).record


def test_parquet_files_by_the_hubs_names_with_a_validation_split(tree, tmp_path):
    train = datasets.Dataset.from_dict(tree_split(tree, "train"), features=features())
    (tmp_path / "data").mkdir()
    train.select(range(30)).to_parquet(str(tmp_path / "data" / "train-00000-of-00002.parquet"))
    train.select(range(30, 36)).to_parquet(str(tmp_path / "data" / "train-00001-of-00002.parquet"))
    datasets.Dataset.from_dict(tree_split(tree, "test"), features=features()).to_parquet(
        str(tmp_path / "data" / "valid.parquet"))
    source = load_source(hf_cfg(path=str(tmp_path), split_names={"val": "valid", "test": None}, test_fraction=0.25))
    assert source.class_names == CLASSES  # the ClassLabel kept in the parquet files' metadata
    assert (len(source.train), len(source.test), len(source.val)) == (27, 9, 9)
    assert np.bincount(source.test.labels).tolist() == [3, 3, 3]
    with pytest.raises(UserError) as err:
        load_source(hf_cfg(path=str(tmp_path)))
    assert str(err.value) == (f"dataset.path={tmp_path} has no split 'test' (its splits: train, valid); set "
                              "dataset.split_names.test to one of them or dataset.split_names.test=null to hold out "
                              "dataset.test_fraction")


def test_string_labels_sorted_and_large_images_kept_aspect_true(tmp_path):
    rng = np.random.default_rng(0)
    photos = [cv2.imencode(".jpg", rng.integers(0, 255, (90, 120, 3), dtype=np.uint8))[1].tobytes() for _ in range(8)]
    names = ["zebra", "ant"] * 4
    table = datasets.Dataset.from_dict({"picture": [{"bytes": b, "path": None} for b in photos], "kind": names},
                                       features=datasets.Features({"picture": datasets.Image(),
                                                                   "kind": datasets.Value("string")}))
    datasets.DatasetDict({"train": table, "test": table.select(range(4))}).save_to_disk(str(tmp_path / "saved"))
    source = load_source(hf_cfg(path=str(tmp_path / "saved"), image_column="picture", label_column="kind",
                                image_size=80, crop_pct=1.0))
    assert source.class_names == ["ant", "zebra"] and source.train.labels.tolist() == [1, 0] * 4
    assert source.train.stored(0, 80).shape == (80, 106, 3)  # shorter side 80, 4:3 kept
    assert source.test.image(0, 80).shape == (80, 80, 3)


@pytest.mark.parametrize("make, expected", [
    (lambda root: root, "is not a Hugging Face dataset: it holds no save_to_disk files"),
    (lambda root: root / "nope", "does not exist; point it at a folder written by save_to_disk"),
])
def test_a_path_that_holds_no_dataset_is_one_line(tmp_path, make, expected):
    with pytest.raises(UserError) as err:
        load_source(hf_cfg(path=str(make(tmp_path))))
    assert expected in str(err.value)


def test_absent_columns_and_unknown_labels_are_one_line(saved, tree, tmp_path):
    with pytest.raises(UserError) as err:
        load_source(hf_cfg(path=str(saved), image_column="img"))
    assert str(err.value) == (f"the train split of {saved} has no column 'img' (its columns: image, label); set "
                              "dataset.image_column to the column that holds it")
    with pytest.raises(UserError, match=r"^column label of the train split of .* holds ClassLabel\(names=\['cat', "):
        load_source(hf_cfg(path=str(saved), image_column="label"))
    values = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    test = tree_split(tree, "test")
    test["label"][5] = 7
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(tree_split(tree, "train"), features=values),
                          "test": datasets.Dataset.from_dict(test, features=values)}).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(UserError) as err:
        load_source(hf_cfg(path=str(tmp_path / "d")))
    assert "row 5 of the test split" in str(err.value)
    assert "has label '7', not a class of the training split (0, 1, 2)" in str(err.value)


def test_without_the_datasets_package_the_line_names_the_extra(saved, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets then fails
    with pytest.raises(UserError) as err:
        load_source(hf_cfg(path=str(saved)))
    assert str(err.value) == 'dataset=hf needs the datasets package: pip install "cvrun[hf]"'


def test_training_on_a_saved_dataset_learns_and_a_bad_column_stops_before_the_run_folder(saved, tmp_path):
    cfg = make_cfg(dataset={"name": "hf", "path": str(saved), "image_size": 12, "val_fraction": 0.0},
                   model={"name": "linear"}, aug={"name": "none", "base": False}, optim={"lr": 0.05},
                   trainer={"epochs": 3, "batch_size": 8, "progress": False, "deterministic": True})
    summary = start_run(cfg, RunFolder(tmp_path / "run"))
    assert summary["status"] == "completed" and summary["test_acc1"] > 80, summary  # chance 33
    assert summary["splits"]["test"]["per_class"] == {"cat": 3, "dog": 3, "frog": 3}
    result = cli("train", "dataset=hf", f"dataset.path={saved}", "dataset.label_column=labels", "model=linear",
                 "trainer.epochs=1", "trainer.progress=false", cwd=tmp_path)
    assert result.returncode == 2 and "has no column 'labels'" in result.stderr
    assert not (tmp_path / "outputs").exists()
