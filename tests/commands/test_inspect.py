"""`cvrun inspect` on a CIFAR-10 run: numbers that agree with each other and with the run, a page that shows them."""

import csv
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import cli, needs_chromium, open_in_chromium


@pytest.fixture(scope="module")
def inspected(cifar10_run, tmp_path_factory):
    """A copy of the CIFAR-10 run, inspected on its 3,000 test images (t-SNE of 300 of them)."""
    run = shutil.copytree(cifar10_run, tmp_path_factory.mktemp("inspect") / "run")
    result = cli("inspect", str(run), "embedding_images=300", cwd=run.parent)
    assert result.returncode == 0, result.stderr
    return run, result.stdout


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_per_class_metrics_average_to_the_runs_top1(inspected):
    run, stdout = inspected
    summary = json.loads((run / "summary.json").read_text())
    header, *rows = read_csv(run / "inspect_test" / "per_class.csv")
    assert header == ["class", "support", "acc1", "precision", "recall", "f1", "acc5"]
    classes = {row[0]: row for row in rows[:-2]}
    assert list(classes) == ["airplane", "frog", "truck"] and [r[0] for r in rows[-2:]] == ["macro", "weighted"]
    support = {name: int(row[1]) for name, row in classes.items()}
    assert sum(support.values()) == summary["test_samples"] == 3000
    top1 = sum(float(row[2]) * support[name] for name, row in classes.items()) / 3000
    assert abs(top1 - summary["test_acc1"]) < 0.01 and abs(float(rows[-1][2]) - summary["test_acc1"]) < 0.01
    assert all(row[2] == row[4] for row in rows)  # acc1 is the recall
    assert {name: float(row[2]) for name, row in classes.items()} == summary["test_per_class_acc1"]
    confusion_header, *confusion = read_csv(run / "inspect_test" / "confusion.csv")
    assert confusion_header == ["class", "airplane", "frog", "truck"]
    for row in confusion:  # each row sums to its class's support; its diagonal is the correct ones
        assert sum(map(int, row[1:])) == support[row[0]]
        correct = int(row[1 + confusion_header.index(row[0]) - 1])
        assert abs(100 * correct / support[row[0]] - float(classes[row[0]][2])) < 0.01
    assert f"test: top-1 {summary['test_acc1']:.2f}%" in stdout and stdout.rstrip().endswith("inspect_test")


def test_every_figure_is_written_and_embedded_in_the_report(inspected):
    run, _ = inspected
    folder = run / "inspect_test"
    figures = ["confusion.png", "mistakes.png", "cam.png", "calibration.png", "embedding.png", "filters.png",
               "class_means.png"]
    for name in figures:
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    page = (folder / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(figures) + 1  # and curves.png
    assert "expected calibration error" in page and "Most confused pairs" in page


@needs_chromium
def test_the_report_loads_in_a_headless_browser_with_every_image_drawn(inspected, tmp_path):
    """No console message (the page logs none itself), and every image has a width once loaded."""
    run, _ = inspected
    widths, log = open_in_chromium(run / "inspect_test" / "report.html", tmp_path)
    assert len(widths) == 8 and all(width > 0 for width in widths), widths
    assert "CONSOLE" not in log, log


@pytest.mark.parametrize("arguments, message", [
    (["{run}", "split=train"], "split=train is not a split; use split=test or split=val"),
    (["{run}", "model=lenet5"], "model=lenet5 is not a setting of cvrun inspect"),
    (["{run}", "embedding_images=5"], "embedding_images=5 is not a count t-SNE can use"),
    (["{empty}"], "is not a cvrun run folder"),
])
def test_mistakes_are_one_line_and_exit_2(cifar10_run, tmp_path, arguments, message):
    result = cli("inspect", *[a.format(run=cifar10_run, empty=tmp_path) for a in arguments], cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_a_linear_models_first_layer_is_drawn_as_class_templates(tmp_path):
    from cvrun.commands.inspect import filters_figure
    from cvrun.models import create_model

    what = filters_figure(create_model("linear", 3, 32), ["a", "b", "c"], 32, tmp_path / "filters.png")
    assert what == "each class's weights over the pixels (its template)" and (tmp_path / "filters.png").exists()
    assert "first conv layer's 6 filters (5x5)" in filters_figure(create_model("lenet5", 3, 32), ["a", "b", "c"], 32,
                                                                   tmp_path / "lenet.png")


def test_runs_inspect_cannot_read_are_one_line_and_exit_2(cifar10_run, image_tree, tmp_path):
    """No best.pt, a knn run (no weights), data moved since (then dataset.root= finds it)."""
    from tests.conftest import train_run

    no_best = shutil.copytree(cifar10_run, tmp_path / "no_best")
    (no_best / "checkpoints" / "best.pt").unlink()
    knn = tmp_path / "knn"
    train_run(knn, regime={"name": "knn", "features": "pixels"})
    tree_run = tmp_path / "tree_run"
    train_run(tree_run, dataset={"name": "imagefolder", "root": str(image_tree), "image_size": 16,
                                 "val_fraction": 0.0}, trainer={"epochs": 1})
    moved = image_tree.rename(tmp_path / "moved_tree")
    for run, message in ((no_best, "has no checkpoints/best.pt"), (knn, "is a regime=knn run: it trains no weights"),
                         (tree_run, str(image_tree))):
        result = cli("inspect", str(run), cwd=tmp_path)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    found = cli("inspect", str(tree_run), f"dataset.root={moved}", "embedding_images=10", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert (tree_run / "inspect_test" / "report.html").is_file()
