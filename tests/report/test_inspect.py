"""The metrics and figures of `cvrun inspect`, on hand-made predictions."""

import numpy as np
import pytest

from cvrun.report.inspect import (Predictions, confused_pairs, expected_calibration_error, per_class_rows,
                                  plot_confusion, shown_classes)


def predictions(labels, predicted, classes=3, confidence=0.9):
    probs = np.full((len(labels), classes), (1 - confidence) / (classes - 1))
    probs[np.arange(len(labels)), predicted] = confidence
    return Predictions(np.asarray(labels), probs, [f"c{i}" for i in range(classes)])


def test_per_class_rows_by_hand():
    p = predictions([0, 0, 0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 2, 2, 2])
    rows = {row["class"]: row for row in per_class_rows(p)}
    assert rows["c0"]["support"] == 4 and rows["c0"]["acc1"] == 75 and rows["c0"]["precision"] == 100
    assert rows["c1"]["acc1"] == 50 and rows["c1"]["precision"] == 50
    assert rows["c2"]["acc1"] == 100 and rows["c2"]["precision"] == pytest.approx(200 / 3)
    assert rows["c2"]["f1"] == pytest.approx(80)  # 2 x (2/3 x 1) / (2/3 + 1)
    assert rows["macro"]["acc1"] == pytest.approx(75)  # (75 + 50 + 100) / 3
    assert rows["weighted"]["acc1"] == pytest.approx(100 * 6 / 8)  # the top-1 over the split
    assert all(row["acc5"] == 100 for row in rows.values())  # three classes: always in the top five
    assert p.confusion().sum(axis=1).tolist() == [4, 2, 2]


def test_confused_pairs_and_the_classes_a_large_matrix_shows():
    confusion = np.array([[5, 3, 0], [1, 6, 0], [0, 4, 2]])
    pairs = confused_pairs(confusion, ["a", "b", "c"])
    assert [(p["true"], p["predicted"], p["images"]) for p in pairs] == [("c", "b", 4), ("a", "b", 3), ("b", "a", 1)]
    assert pairs[0]["share"] == pytest.approx(100 * 4 / 6)
    large = np.eye(150, dtype=int) * 10
    large[7, 99] = large[140, 3] = 5
    assert len(shown_classes(large)) == 20 and {3, 7, 99, 140} <= set(shown_classes(large))
    assert len(shown_classes(np.eye(100, dtype=int))) == 100


def test_expected_calibration_error():
    assert expected_calibration_error(predictions([0, 1, 2, 0], [0, 1, 2, 0], confidence=1.0))[0] == 0
    overconfident = predictions([0, 1, 2, 0], [0, 1, 1, 1], confidence=0.9)  # 90% sure, half right
    ece, bins = expected_calibration_error(overconfident)
    assert ece == pytest.approx(40) and bins == [pytest.approx({"low": 13 / 15, "high": 14 / 15, "count": 4,
                                                                "confidence": 0.9, "accuracy": 0.5})]


def test_confusion_png_draws_up_to_a_hundred_classes_and_a_subset_beyond(tmp_path):
    for classes in (3, 120):
        confusion = np.eye(classes, dtype=int) * 5
        plot_confusion(confusion, [f"class{i}" for i in range(classes)], tmp_path / f"{classes}.png")
        assert (tmp_path / f"{classes}.png").stat().st_size > 1000
