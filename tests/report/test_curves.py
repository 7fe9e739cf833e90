"""Label-efficiency curves: accuracy against labels per class on a log axis, a line per regime, bands over seeds."""

import math

import numpy as np
import pytest
from matplotlib.collections import PolyCollection

from cvrun.report import curves, sweep


def captured(monkeypatch, module):
    """The figures `module` would save, kept open for inspection."""
    figures = []
    monkeypatch.setattr(module, "save_png", lambda figure, path, **savefig: figures.append(figure))
    return figures


# (regime, labels per class) -> test top-1 over three seeds
RESULTS = {("scratch", 4): [20.0, 22.0, 24.0], ("scratch", 25): [30.0, 31.0, 32.0],
           ("scratch", 400): [50.0, 50.5, 51.0], ("fixmatch", 4): [35.0, 39.0, 43.0],
           ("fixmatch", 25): [45.0, 46.0, 47.0], ("fixmatch", 400): [55.0, 55.0, 55.0]}


def test_one_line_per_regime_through_the_means_with_t_interval_bands(monkeypatch, tmp_path):
    figures = captured(monkeypatch, curves)
    points = [(regime, labels, value) for (regime, labels), values in RESULTS.items() for value in values]
    curves.plot_label_efficiency(points, "test top-1 (%)", tmp_path / "labels.png")
    (figure,) = figures
    axis = figure.axes[0]
    assert axis.get_xscale() == "log" and list(axis.get_xticks()) == [4, 25, 400]
    lines = {line.get_label(): line for line in axis.get_lines()}
    assert sorted(lines) == ["fixmatch (3 seeds)", "scratch (3 seeds)"]
    assert list(lines["scratch (3 seeds)"].get_xdata()) == [4, 25, 400]
    assert list(lines["scratch (3 seeds)"].get_ydata()) == pytest.approx([22.0, 31.0, 50.5])
    bands = [c for c in axis.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2
    # scratch at 4 labels: mean 22, sd 2 over 3 seeds -> 22 +- 4.303 x 2 / sqrt(3) (Student's t, 2 df)
    vertices = bands[0].get_paths()[0].vertices  # the first line's: scratch
    at_four = sorted(y for x, y in vertices if x == 4)
    assert at_four[0] == pytest.approx(22 - 4.302653 * 2 / math.sqrt(3), abs=1e-4)
    assert at_four[-1] == pytest.approx(22 + 4.302653 * 2 / math.sqrt(3), abs=1e-4)


def test_a_sweep_over_labels_per_class_draws_its_summary_png_as_the_curve(monkeypatch, tmp_path):
    figures = captured(monkeypatch, curves)
    rows = [{"regime": regime, "dataset.labeled_per_class": str(labels), "trainer.seed": str(seed),
             "status": "completed", "test_acc1": value}
            for (regime, labels), values in RESULTS.items() for seed, value in enumerate(values)]
    rows.append({"regime": "scratch", "dataset.labeled_per_class": "4", "trainer.seed": "9", "status": "failed",
                 "test_acc1": None})
    sweep.plot_sweep(rows, ["regime", "dataset.labeled_per_class", "trainer.seed"], tmp_path / "summary.png")
    (figure,) = figures
    axis = figure.axes[0]
    labels = sorted(line.get_label() for line in axis.get_lines())
    assert labels == ["regime=fixmatch (3 seeds)", "regime=scratch (3 seeds)"] and axis.get_xscale() == "log"
    means = {line.get_label(): list(line.get_ydata()) for line in axis.get_lines()}
    assert means["regime=fixmatch (3 seeds)"] == pytest.approx([np.mean(RESULTS["fixmatch", n]) for n in (4, 25, 400)])


def test_a_real_png_is_written(tmp_path):
    path = tmp_path / "labels.png"
    curves.plot_label_efficiency([("scratch", 4, 20.0), ("scratch", 25, 30.0)], "test top-1 (%)", path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
