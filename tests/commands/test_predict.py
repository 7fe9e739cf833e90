"""`cvrun predict`: the run's own preprocessing, eval's predictions, bad files as rows, mistakes in one line."""

import csv
import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import SHARED_CIFAR10, cli

THREE = ("airplane", "frog", "truck")


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def accuracy_of(rows: list[dict]) -> float:
    """Top-1 accuracy of predictions on CIFAR-10 test files (the true class is the file's folder)."""
    return 100.0 * sum(Path(row["path"]).parent.name == row["top1"] for row in rows) / len(rows)


def evaluation_predictions(run: Path) -> dict[str, torch.Tensor]:
    """Each test image's probabilities as evaluation computes them (the run's loader and normalisation)."""
    from cvrun.commands.eval import load_run
    from cvrun.data.loaders import make_loader
    from cvrun.data.splits import build_splits
    from cvrun.engine.evaluate import Normalize, predict
    from cvrun.models.pretrained import rebuild_model

    cfg, state = load_run(run)
    test = build_splits(cfg.dataset).test
    loader = make_loader(test, cfg.dataset.image_size, 500, train=False, seed=0, num_workers=0)
    logits, _ = predict(rebuild_model(cfg, state), loader, Normalize(cfg.dataset.mean, cfg.dataset.std,
                                                                        torch.device("cpu")))
    return {str(SHARED_CIFAR10 / image_id): row.softmax(0) for image_id, row in zip(test.ids, logits)}


def test_predict_gives_evals_predictions_on_the_same_files(cifar10_run, tmp_path):
    """3,000 CIFAR-10 test files: the same top-1 and probabilities as evaluation, so the same accuracy."""
    folders = [str(SHARED_CIFAR10 / "test" / name) for name in THREE]
    result = cli("predict", str(cifar10_run), *folders, "--top-k", "2", "--out", str(tmp_path / "p.csv"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = read_rows(tmp_path / "p.csv")
    assert list(rows[0]) == ["path", "top1", "top1_prob", "top2", "top2_prob", "error"] and len(rows) == 3000
    assert result.stdout.splitlines()[0] == "path,top1,top1_prob,top2,top2_prob,error"  # the first rows shown
    expected = evaluation_predictions(cifar10_run)
    names = list(THREE)
    for row in rows:
        probs = expected[row["path"]]
        assert row["top1"] == names[int(probs.argmax())] and row["error"] == ""
        assert abs(float(row["top1_prob"]) - probs.max().item()) < 1e-5
    summary_acc1 = json.loads((cifar10_run / "summary.json").read_text())["test_acc1"]
    assert round(accuracy_of(rows), 2) == summary_acc1


def test_flip_tta_in_predict_and_eval_agree(cifar10_run, tmp_path):
    """`eval --tta` reports both accuracies; predict --tta on the same files gives its TTA figure."""
    evaluated = cli("eval", str(cifar10_run), "--tta", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    plain, flipped = (float(x) for x in re.findall(r"top-1 ([\d.]+)%", evaluated.stdout))
    gain = float(re.search(r"TTA: top-1 [\d.]+% \(([+-][\d.]+)\)", evaluated.stdout).group(1))
    assert abs(gain - (flipped - plain)) <= 0.011  # the gain of the unrounded accuracies
    folders = [str(SHARED_CIFAR10 / "test" / name) for name in THREE]
    result = cli("predict", str(cifar10_run), *folders, "--tta", "--out", str(tmp_path / "t.csv"), cwd=tmp_path)
    assert result.returncode == 0 and "with flip TTA" in result.stdout
    assert round(accuracy_of(read_rows(tmp_path / "t.csv")), 2) == flipped


def test_files_that_cannot_be_read_are_rows_and_the_status_says_so(cifar10_run, tmp_path):
    images = tmp_path / "images"
    (images / "nested").mkdir(parents=True)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(images / "nested" / "large.jpg"), rng.integers(0, 255, (900, 1400, 3), dtype=np.uint8))
    cv2.imwrite(str(images / "tiny.png"), rng.integers(0, 255, (3, 5, 3), dtype=np.uint8))
    cv2.imwrite(str(images / "grey.png"), rng.integers(0, 255, (32, 32), dtype=np.uint8))
    (images / "notes.png").write_text("not an image")
    (tmp_path / "list.txt").write_text("images/tiny.png\nimages/notes.png\n\n")
    result = cli("predict", str(cifar10_run), str(images), str(tmp_path / "list.txt"), "--top-k", "3",
                 "--out", "p.csv", cwd=tmp_path)
    assert result.returncode == 1 and "2 file(s) could not be read" in result.stdout
    rows = [(os.path.relpath(row["path"], tmp_path), row) for row in read_rows(tmp_path / "p.csv")]
    assert [name for name, _ in rows] == ["images/grey.png", "images/nested/large.jpg", "images/notes.png",
                                          "images/tiny.png", "images/tiny.png", "images/notes.png"]  # the folder
    for name, row in rows:  # sorted, then the list in its order
        if name.endswith("notes.png"):
            assert row["error"] == "not an image OpenCV can read" and row["top1"] == ""
        else:  # resized to the run's 32 px, whatever the size or channels
            assert row["error"] == "" and row["top1"] in THREE
            assert abs(sum(float(row[f"top{k}_prob"]) for k in (1, 2, 3)) - 1) < 1e-4


@pytest.mark.parametrize("arguments, message", [
    (["{run}", "empty"], "empty holds no image files"),
    (["{run}", "missing.png"], "missing.png does not exist; name image files, folders of images or a .txt list"),
    (["{run}", "one.png", "--top-k", "0"], "--top-k 0 is not a count"),
    (["nowhere", "one.png"], "nowhere is not a cvrun run folder"),
    (["nothing.onnx", "one.png"], "nothing.onnx does not exist; export one with cvrun export RUN_DIR"),
    (["{run}", "one.png"], "predictions.csv exists; pass --out FILE to write elsewhere or to replace it"),
    (["{run}", "empty.txt"], "empty.txt: no image paths listed; put one image path a line in the list"),
    (["{run}", "blank.txt", "empty.txt"], "blank.txt empty.txt: no image paths listed"),
    (["{run}", "one.png", "--out", "empty"], "--out empty is a folder; name the CSV file to write, such as "
                                             "empty/predictions.csv"),
    (["{run}/export/model.pt2", "one.png"], "predict reads run folders and .onnx files (cvrun export RUN_DIR "
                                             "--format onnx), not .pt2 files"),
    (["{run}", "one.png", "--min-confidence", "1.5"], "--min-confidence 1.5 is not a probability; use a value "
                                                      "from 0 to 1"),
    (["{run}", "one.png", "--min-confidence", "-0.1"], "--min-confidence -0.1 is not a probability"),
])
def test_mistakes_are_one_line_and_exit_2(cifar10_run, tmp_path, arguments, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.txt").write_text("\n  \n\t\n")
    (tmp_path / "nowhere").mkdir()
    cv2.imwrite(str(tmp_path / "one.png"), np.zeros((32, 32, 3), np.uint8))
    (tmp_path / "predictions.csv").write_text("a user's own file\n")
    result = cli("predict", *[a.format(run=cifar10_run) for a in arguments], cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert (tmp_path / "predictions.csv").read_text() == "a user's own file\n"


def test_min_confidence_abstains_below_it_and_reports_the_coverage(cifar10_run, tmp_path):
    """300 CIFAR-10 test files: a row is abstained exactly when its top-1 probability is below P; the coverage
    line counts the others; the covered rows are the more accurate ones."""
    listed = tmp_path / "files.txt"
    listed.write_text("\n".join(str(path) for name in THREE
                                for path in sorted((SHARED_CIFAR10 / "test" / name).iterdir())[:100]))
    result = cli("predict", str(cifar10_run), str(listed), "--top-k", "1", "--min-confidence", "0.8",
                 "--out", "p.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = read_rows(tmp_path / "p.csv")
    assert list(rows[0]) == ["path", "top1", "top1_prob", "abstained", "error"] and len(rows) == 300
    for row in rows:
        if abs(float(row["top1_prob"]) - 0.8) > 1e-6:  # the CSV's six decimals decide every other row
            assert row["abstained"] == ("yes" if float(row["top1_prob"]) < 0.8 else "no"), row
    covered = [row for row in rows if row["abstained"] == "no"]
    assert 0 < len(covered) < 300
    assert (f"coverage {100 * len(covered) / 300:.2f}%: {len(covered)} of 300 images predicted with confidence "
            f">= 0.8, {300 - len(covered)} abstained") in result.stdout
    assert accuracy_of(covered) > accuracy_of(rows)


def test_out_never_replaces_a_file_of_the_run(source_run, tmp_path):
    """The run's own files are refused, whatever they are; a predictions CSV in the run folder may be rewritten."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(source_run, run)
    cv2.imwrite(str(tmp_path / "one.png"), np.zeros((32, 32, 3), np.uint8))
    owned = {name: (run / name).read_bytes() for name in ("config.yaml", "summary.json", "checkpoints/best.pt")}
    for name in owned:
        result = cli("predict", str(run), "one.png", "--out", str(run / name), cwd=tmp_path)
        assert result.returncode == 2 and f"--out {run / name} is a file of the run {run}" in result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
    assert {name: (run / name).read_bytes() for name in owned} == owned
    for _ in range(2):
        result = cli("predict", str(run), "one.png", "--out", str(run / "predictions.csv"), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert len(read_rows(run / "predictions.csv")) == 1
