"""dataset=csv: a labels file gives the splits, fingerprints and pool an image-folder tree of the same files gives;
TSVs, the Kaggle layout, held-out test rows; bad rows refused in one line before a run folder exists."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from cvrun.commands.train import start_run
from cvrun.data.sources import load_source
from cvrun.data.splits import build_splits, split_changes, split_record
from cvrun.engine.rundir import RunFolder
from cvrun.errors import UserError
from tests.conftest import cli, make_cfg, write_image_tree

CLASSES = {"cat": 12, "dog": 12, "frog": 12}


def write_table(path: Path, header: list[str], rows: list[list], delimiter: str = ",") -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def tree_rows(tree: Path) -> list[list[str]]:
    """path, label, split of every image of an image-folder tree, paths below the tree (as its ids are)."""
    return [[str(p.relative_to(tree)), p.parent.name, p.parts[-3]] for p in sorted(tree.glob("*/*/*.png"))]


@pytest.fixture
def tree(tmp_path) -> Path:
    return write_image_tree(tmp_path / "tree", CLASSES)


def csv_cfg(**dataset):
    return make_cfg(dataset={"name": "csv", "image_size": 12, **dataset}).dataset


def test_a_csv_of_a_trees_files_gives_the_trees_splits_fingerprints_and_pool(tree):
    # Rows in another order than the tree's listing: the samples follow the file.
    rows = tree_rows(tree)[::-1]
    labels = write_table(tree / "labels.csv", ["path", "label", "split"], rows)
    settings = {"labeled_per_class": 6, "val_fraction": 0.2, "cache": "none", "image_size": 12}
    from_tree = build_splits(make_cfg(dataset={"name": "imagefolder", "root": str(tree), **settings}).dataset)
    ordered = write_table(tree / "ordered.csv", ["path", "label", "split"], tree_rows(tree))
    from_csv = build_splits(csv_cfg(path=str(ordered), split_column="split", **settings))
    assert from_csv.class_names == from_tree.class_names == ["cat", "dog", "frog"]
    assert from_csv.record == from_tree.record  # train, val, test and the unlabeled pool, with fingerprints
    assert from_csv.record["unlabeled"]["images"] == 18 and from_csv.record["val"]["images"] == 4
    assert list(from_csv.train.paths) == list(from_tree.train.paths)
    np.testing.assert_array_equal(from_csv.test.image(0, 12), from_tree.test.image(0, 12))
    reversed_order = build_splits(csv_cfg(path=str(labels), split_column="split", **settings))
    assert reversed_order.record["test"]["fingerprint"] != from_tree.record["test"]["fingerprint"]


def test_a_changed_label_changes_the_record_a_resume_checks(tree):
    rows = tree_rows(tree)
    first = split_record(load_source(csv_cfg(path=str(write_table(tree / "a.csv", ["path", "label", "split"], rows)),
                                             split_column="split")).train, ["cat", "dog", "frog"])
    rows[-1][1] = "dog"  # a training frog relabelled
    second = split_record(load_source(csv_cfg(path=str(write_table(tree / "b.csv", ["path", "label", "split"], rows)),
                                              split_column="split")).train, ["cat", "dog", "frog"])
    assert split_changes({"train": first}, {"train": second}) == ["train/dog has 1 more image",
                                                                  "train/frog has 1 fewer image"]


def test_kaggle_layout_tsv_integer_labels_and_a_held_out_test_share(tmp_path, tree):
    """train.tsv with id and integer label columns, the images in a folder of their own named by id."""
    images = tmp_path / "kaggle" / "train_images"
    images.mkdir(parents=True)
    rows = []
    for i, (path, label, _) in enumerate(row for row in tree_rows(tree) if row[2] == "train"):
        shutil.copy(tree / path, images / f"img{i:03d}.png")
        rows.append([f"img{i:03d}", ["cat", "dog", "frog"].index(label)])
    labels = write_table(tmp_path / "kaggle" / "train.tsv", ["id", "target"], rows, delimiter="\t")
    cfg = csv_cfg(path=str(labels), path_column="id", label_column="target", image_dir=str(images),
                  path_suffix=".png", label_names=["cat", "dog", "frog"], test_fraction=0.25)
    source = load_source(cfg)
    assert source.class_names == ["cat", "dog", "frog"]
    assert len(source.test) == 9 and np.bincount(source.test.labels).tolist() == [3, 3, 3]  # stratified
    assert len(source.train) == 27 and not set(source.train.ids) & set(source.test.ids)
    assert source.test.ids[0].startswith("img") and source.test.ids[0].endswith(".png")
    assert list(load_source(cfg).test.ids) == list(source.test.ids)  # seeded by dataset.split_seed
    # Integers without names: the classes are the integers, in numeric order.
    unnamed = load_source(csv_cfg(path=str(labels), path_column="id", label_column="target", image_dir=str(images),
                                  path_suffix=".png"))
    assert unnamed.class_names == ["0", "1", "2"]


def test_a_second_file_holds_the_test_rows_and_semicolons_are_sniffed(tree):
    rows = tree_rows(tree)
    train = write_table(tree / "train.csv", ["file", "class"], [r[:2] for r in rows if r[2] == "train"], ";")
    test = write_table(tree / "test.csv", ["file", "class"], [r[:2] for r in rows if r[2] == "test"], ";")
    source = load_source(csv_cfg(path=str(train), test_path=str(test), path_column="file", label_column="class"))
    assert (len(source.train), len(source.test), source.val) == (36, 9, None)
    assert source.test.ids[0] == "test/cat/0000.png"


@pytest.mark.parametrize("edit, expected", [
    (lambda rows: rows[3].__setitem__(0, "train/cat/none.png"), "labels.csv line 5: image {tree}/train/cat/none.png "
                                                                "does not exist; fix the path"),
    (lambda rows: rows[4].__setitem__(1, "cow"), "labels.csv line 6: label 'cow' is not a class of the training "
                                                 "rows (cat, dog, frog)"),
    (lambda rows: [row.__setitem__(1, "") for row in rows[:3]],
     "labels.csv line 2: no label in column label (and 2 more rows like it); fill it in or remove the row"),
    (lambda rows: rows[0].__setitem__(2, "tset"), "labels.csv line 2: split 'tset' in column split; write train, val "
                                                  "or test there"),
])
def test_a_bad_row_is_one_line_naming_its_line(tree, edit, expected):
    rows = tree_rows(tree)
    edit(rows)
    labels = write_table(tree / "labels.csv", ["path", "label", "split"], rows)
    with pytest.raises(UserError) as err:
        load_source(csv_cfg(path=str(labels), split_column="split"))
    assert expected.format(tree=tree) in str(err.value) and "\n" not in str(err.value)


def test_a_missing_column_names_the_columns_there_are(tree):
    labels = write_table(tree / "labels.csv", ["file", "label"], [r[:2] for r in tree_rows(tree)])
    with pytest.raises(UserError) as err:
        load_source(csv_cfg(path=str(labels)))
    assert str(err.value) == ("labels.csv has no column 'path' (its columns: file, label); set dataset.path_column "
                              "to the column that holds it")


def test_a_file_that_is_not_text_is_one_line(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_bytes(b"path,label\n\xff\xfe\x00\x81,cat\n")
    with pytest.raises(UserError, match=r"cannot be read as CSV or TSV text \(.*\); save it as UTF-8"):
        load_source(csv_cfg(path=str(labels)))


def test_a_bad_row_stops_the_run_before_its_folder_exists(tree, tmp_path):
    rows = tree_rows(tree)
    rows[7][0] = "train/dog/gone.png"
    labels = write_table(tree / "labels.csv", ["path", "label", "split"], rows)
    result = cli("train", "dataset=csv", f"dataset.path={labels}", "dataset.split_column=split", "model=linear",
                 "trainer.epochs=1", "trainer.progress=false", cwd=tmp_path)
    assert result.returncode == 2 and "labels.csv line 9: image" in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_training_on_a_csv_learns_and_eval_reads_it_back(tree, tmp_path):
    labels = write_table(tree / "labels.csv", ["path", "label", "split"], tree_rows(tree))
    cfg = make_cfg(dataset={"name": "csv", "path": str(labels), "split_column": "split", "image_size": 12,
                            "val_fraction": 0.0},
                   model={"name": "linear"}, aug={"name": "none", "base": False}, optim={"lr": 0.05},
                   trainer={"epochs": 3, "batch_size": 8, "progress": False, "deterministic": True})
    summary = start_run(cfg, RunFolder(tmp_path / "run"))
    assert summary["status"] == "completed" and summary["test_acc1"] > 80, summary  # chance 33
    assert summary["splits"]["test"]["per_class"] == {"cat": 3, "dog": 3, "frog": 3}
    result = cli("eval", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # The labels file and its images moved: eval is told where with the source's own path key.
    moved = tree.rename(tmp_path / "moved")
    assert cli("eval", str(tmp_path / "run"), cwd=tmp_path).returncode == 2
    wrong = cli("eval", str(tmp_path / "run"), "dataset.pth=moved/labels.csv", cwd=tmp_path)
    assert wrong.returncode == 2 and wrong.stderr == (
        "cvrun: error: dataset.pth is not where the data of a dataset=csv run lies; give its new place with "
        "dataset.cache_dir=..., dataset.image_dir=..., dataset.path=..., dataset.root=..., dataset.test_path=..., "
        "dataset.unlabeled_root=...\n")
    found = cli("eval", str(tmp_path / "run"), "dataset.path=moved/labels.csv", cwd=tmp_path)
    assert found.returncode == 0 and "test: top-1" in found.stdout, found.stderr
    assert moved.is_dir()


def test_a_labels_file_is_planned_from_before_the_run_folder_as_a_tree_is(tree):
    """planned_splits (what fixmatch's pool check and knn's k check read) builds a labels file's splits unread."""
    from cvrun.data.splits import planned_splits

    labels = write_table(tree / "labels.csv", ["path", "label", "split"], tree_rows(tree))
    cfg = csv_cfg(path=str(labels), split_column="split", labeled_per_class=5)
    planned = planned_splits(cfg)
    assert planned is not None and planned.train.images is None  # file paths: nothing decoded
    assert planned.record == build_splits(cfg).record


def test_the_class_count_and_names_come_from_the_labels_file(tree):
    """cvrun info's class count and a teacher check's class names, read from the rows (no image decoded)."""
    from cvrun.data.sources import count_classes, known_class_names

    labels = write_table(tree / "labels.csv", ["path", "label", "split"], tree_rows(tree))
    cfg = csv_cfg(path=str(labels), split_column="split")
    assert (count_classes(cfg), known_class_names(cfg)) == (3, ["cat", "dog", "frog"])
