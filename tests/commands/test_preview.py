"""`cvrun preview`: a labelled PNG grid of augmented training images in a run-style folder."""

import re
from pathlib import Path

import cv2
import numpy as np

from cvrun.commands.preview import describe_ops, pick_images
from cvrun.report.grid import GAP, LABEL_WIDTH
from tests.conftest import CIFAR10_ARGS, cli, full_disk_for, needs_cifar10


def preview_png(result, cwd: Path) -> np.ndarray:
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.is_file() and path.name == "preview.png"
    assert re.fullmatch(r"\d\d-\d\d-\d\d_preview_\w+", path.parent.name)
    assert (path.parent / "config.yaml").is_file()
    assert path.resolve().is_relative_to((cwd / "outputs").resolve())
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def cell(grid: np.ndarray, row: int, column: int, size: int, row_step: int) -> np.ndarray:
    y, x = GAP + 15 + row * row_step, LABEL_WIDTH + column * (size + GAP)
    return grid[y:y + size, x:x + size]


def test_preview_shows_originals_then_augmented_draws(image_tree, tmp_path):
    common = ["dataset=imagefolder", f"dataset.root={image_tree}", "dataset.image_size=32", "images=3", "draws=4",
              "cell=64"]
    plain = preview_png(cli("preview", "aug=none", *common, cwd=tmp_path), tmp_path)
    assert plain.shape[1] == LABEL_WIDTH + 5 * (64 + GAP)
    row_step = (plain.shape[0] - GAP - 15) // 3
    original = cell(plain, 0, 0, 64, row_step)
    assert all(np.array_equal(original, cell(plain, 0, c, 64, row_step)) for c in range(1, 5))

    augmented = preview_png(cli("preview", "aug=randaug", "aug.m=20", *common, cwd=tmp_path), tmp_path)
    assert np.array_equal(cell(augmented, 0, 0, 64, row_step), original)
    assert not all(np.array_equal(original, cell(augmented, 0, c, 64, row_step)) for c in range(1, 5))


@needs_cifar10
def test_preview_of_randaugment_on_cifar10(tmp_path):
    grid = preview_png(cli("preview", "aug=randaug", *CIFAR10_ARGS,
                               cwd=tmp_path), tmp_path)
    assert grid.shape[1] == LABEL_WIDTH + 8 * (128 + GAP)  # 32 px images enlarged 4x, original + 7 draws


def test_preview_mistakes_are_one_line(tmp_path):
    result = cli("preview", "draws=0", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip() == "cvrun: error: draws must be a positive integer, got 0"
    assert not (tmp_path / "outputs").exists()


def test_pick_images_covers_every_class_first():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 5)
    picked = pick_images(labels, 6, seed=0)
    assert len(set(picked)) == 6 and sorted(set(labels[picked[:3]])) == [0, 1, 2]
    assert len(pick_images(labels, 100, seed=0)) == len(labels)


def test_captions_name_the_drawn_ops():
    assert describe_ops([("rotate", -9.0), ("equalize", 0.0)], "randaug") == "rotate -9\nequalize"
    assert describe_ops([], "flip") == "flip"


def test_a_full_disk_ends_preview_with_one_line(tmp_path, monkeypatch, capsys):
    from cvrun.cli import main

    monkeypatch.chdir(tmp_path)
    full_disk_for(monkeypatch, "preview.png")
    assert main(["preview", "dataset=shapes", "images=2", "draws=1"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cvrun: error: cannot write ") and "preview.png: No space" in lines[0]
