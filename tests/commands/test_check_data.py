"""`cvrun check-data`: counts, unreadable files, sizes, exact and near duplicates, the pairs' picture, exit status."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import cli, single
from tests.data.test_duplicates import photo_like

TRAIN = {"cat": range(0, 6), "dog": range(10, 16)}
VAL = {"cat": range(40, 42), "dog": range(50, 52)}
TEST = {"cat": range(20, 23), "dog": range(30, 33)}


def write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="module")
def leaky_tree(tmp_path_factory) -> Path:
    """train/, val/, test/ of photo-like images; in test/: a byte copy of a training image (filed under
    another class), a brightened copy of another; in train/: a file that is no image."""
    root = tmp_path_factory.mktemp("data") / "tree"
    for split, classes in (("train", TRAIN), ("val", VAL), ("test", TEST)):
        for name, seeds in classes.items():
            for number, seed in enumerate(seeds):
                write(root / split / name / f"{number:04d}.png", photo_like(seed))
    (root / "train" / "dog" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n but cut short")
    shutil.copy(root / "train" / "dog" / "0002.png", root / "test" / "cat" / "copy.png")
    brighter = np.clip(photo_like(TRAIN["cat"][1]).astype(int) + 25, 0, 255).astype(np.uint8)
    write(root / "test" / "dog" / "brighter.png", brighter)
    return root


def report_of(result, cwd: Path) -> tuple[dict, Path]:
    folder = single((cwd / "outputs" / "check_data").glob("imagefolder_*"))
    return json.loads((folder / "report.json").read_text()), folder


def test_the_report_counts_names_the_unreadable_file_and_fails_on_a_copied_test_image(leaky_tree, tmp_path):
    result = cli("check-data", "dataset=imagefolder", f"dataset.root={leaky_tree}", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    err = result.stderr.strip().splitlines()[-1]
    assert err.startswith("cvrun: check-data: 1 test image(s) are exact copies") and \
        "test/cat/copy.png = train/dog/0002.png" in err
    report, folder = report_of(result, tmp_path)
    assert {name: split["per_class"] for name, split in report["splits"].items()} == {
        "train": {"cat": 6, "dog": 7}, "val": {"cat": 2, "dog": 2}, "test": {"cat": 4, "dog": 4}}
    assert report["unreadable"] == {"count": 1, "files": ["train/dog/bad.png"]}
    assert "unreadable files: 1 (train/dog/bad.png)" in result.stdout
    assert report["sizes"]["commonest (height x width)"] == {"32x32": 24}  # 25 files, one unreadable
    test_train = report["across"]["test~train"]
    assert test_train["exact_images"] == 1 and test_train["exact"][0]["match_label"] == "dog"
    # The brightened copy is found at the threshold; no other image is near any other.
    assert [(p["image"], p["match"]) for p in test_train["near"]] == [("test/dog/brighter.png", "train/cat/0001.png")]
    assert test_train["near"][0]["distance"] <= report["near_threshold"] == 6
    assert sum(entry["near_images"] for entry in report["across"].values()) == 1
    assert all(entry["near_images"] == entry["exact_groups"] == 0 for entry in report["within"].values())
    assert report["exit_status"] == 1 and (folder / "report.txt").read_text().startswith("check-data: dataset=")
    picture = cv2.imread(str(folder / "pairs.png"))
    assert picture is not None and picture.shape[0] > 4 * 128  # 16 pairs, four to a row
    assert not any(leaky_tree.rglob("report.json"))


def test_near_duplicates_fail_only_when_asked_and_out_names_the_folder(leaky_tree, tmp_path):
    clean = tmp_path / "clean"
    shutil.copytree(leaky_tree, clean)
    (clean / "test" / "cat" / "copy.png").unlink()
    common = ["check-data", "dataset=imagefolder", f"dataset.root={clean}", "pairs=2"]
    passed = cli(*common, f"out={tmp_path / 'report'}", cwd=tmp_path)
    assert passed.returncode == 0, passed.stderr
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["across"]["test~train"]["near_images"] == 1 and report["exit_status"] == 0
    # With an unlabeled pool: it is searched too, and counts as trained on.
    failed = cli(*common, "fail_on_near=true", "dataset.labeled_per_class=4", f"out={tmp_path / 'pool'}", cwd=tmp_path)
    assert failed.returncode == 1
    assert "near duplicates of images trained on: test/dog/brighter.png ~ train/cat/0001.png" in failed.stderr
    report = json.loads((tmp_path / "pool" / "report.json").read_text())
    assert report["splits"]["unlabeled"]["per_class"] == {"cat": 2, "dog": 3}
    assert set(report["across"]) == {"unlabeled~train", "val~train", "val~unlabeled", "test~train", "test~unlabeled",
                                     "test~val"}
    assert report["across"]["test~train"]["near_images"] + report["across"]["test~unlabeled"]["near_images"] == 1


def test_a_source_held_as_arrays_is_hashed_by_its_pixels(tmp_path):
    result = cli("check-data", "dataset=shapes", "dataset.train_size=300", "dataset.test_size=60", "near_threshold=0",
                 "out=report", cwd=tmp_path)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["splits"]["train"]["images"] == 270 and report["splits"]["val"]["images"] == 30
    assert report["sizes"]["commonest (height x width)"] == {"40x40": 360}
    assert result.returncode == report["exit_status"] == (1 if report["across"]["test~train"]["exact"] else 0)
