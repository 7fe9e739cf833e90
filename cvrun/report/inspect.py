"""What `cvrun inspect` computes and draws from a split's predictions: per-class metrics (scikit-learn),
the confusion matrix, the most confident mistakes, calibration, a 2-D embedding (scikit-learn's t-SNE),
Grad-CAM overlays, first-layer filters and class means (cvrun/report/html.py makes the page of them)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from cvrun.engine.calibration import ECE_BINS, ConfidenceBins
from cvrun.report.figures import pyplot, save_png

FULL_MATRIX_CLASSES = 100  # beyond this confusion.png shows the most confused classes
SHOWN_CLASSES = 20
CONFUSED_PAIRS = 10


@dataclass
class Predictions:
    """A split's labels, class probabilities (N x C) and class names."""
    labels: np.ndarray
    probs: np.ndarray
    class_names: list[str]

    @cached_property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @cached_property
    def confidence(self) -> np.ndarray:
        return self.probs.max(axis=1)

    def confusion(self) -> np.ndarray:
        from sklearn.metrics import confusion_matrix

        return confusion_matrix(self.labels, self.predicted, labels=range(len(self.class_names)))


def per_class_rows(p: Predictions) -> list[dict[str, Any]]:
    """One row per class (support, acc1 = recall, precision, recall, f1, acc5, in percent), then macro and
    weighted averages."""
    from sklearn.metrics import precision_recall_fscore_support

    classes = len(p.class_names)
    precision, recall, f1, support = precision_recall_fscore_support(
        p.labels, p.predicted, labels=range(classes), zero_division=0)
    top5 = np.argsort(-p.probs, axis=1)[:, :5]
    hit5 = (top5 == p.labels[:, None]).any(axis=1)
    acc5 = np.array([hit5[p.labels == c].mean() if support[c] else 0.0 for c in range(classes)])
    columns = {"acc1": recall, "precision": precision, "recall": recall, "f1": f1, "acc5": acc5}
    rows = [{"class": name, "support": int(support[c]), **{k: 100 * float(v[c]) for k, v in columns.items()}}
            for c, name in enumerate(p.class_names)]
    present = support > 0
    for name, weights in (("macro", present.astype(float)), ("weighted", support.astype(float))):
        rows.append({"class": name, "support": int(support.sum()),
                     **{k: 100 * float(np.average(v, weights=weights)) for k, v in columns.items()}})
    return rows


def confused_pairs(confusion: np.ndarray, class_names: list[str], count: int = CONFUSED_PAIRS) -> list[dict]:
    """The largest off-diagonal counts: true class, predicted class, images, share of the true class."""
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None)[:count]
    pairs = []
    for flat in order:
        true, predicted = np.unravel_index(flat, off.shape)
        if off[true, predicted] == 0:
            break
        pairs.append({"true": class_names[true], "predicted": class_names[predicted],
                      "images": int(off[true, predicted]),
                      "share": 100 * float(off[true, predicted] / max(confusion[true].sum(), 1))})
    return pairs


def expected_calibration_error(p: Predictions, bins: int = ECE_BINS) -> tuple[float, list[dict[str, float]]]:
    """ECE (percent) over equal-width confidence bins, and each bin's count, confidence and accuracy (the bins
    eval and calibrate count: cvrun.engine.calibration.ConfidenceBins)."""
    import torch

    counted = ConfidenceBins(bins)
    counted.add(torch.from_numpy(p.probs), torch.from_numpy(p.labels).long())
    return counted.ece(), counted.table()


def shown_classes(confusion: np.ndarray) -> np.ndarray:
    """Every class up to FULL_MATRIX_CLASSES, else the SHOWN_CLASSES most involved in confusions."""
    if len(confusion) <= FULL_MATRIX_CLASSES:
        return np.arange(len(confusion))
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    return np.sort(np.argsort(-(off.sum(axis=0) + off.sum(axis=1)))[:SHOWN_CLASSES])


def plot_confusion(confusion: np.ndarray, class_names: list[str], path: Path) -> None:
    """Row-normalised, class names on both axes, each cell's count written in it."""
    plt = pyplot()
    keep = shown_classes(confusion)
    counts = confusion[np.ix_(keep, keep)]
    rates = counts / np.maximum(confusion[keep].sum(axis=1, keepdims=True), 1)
    side = max(5.0, 0.32 * len(keep) + 2)
    figure, axis = plt.subplots(figsize=(side, side), layout="constrained")
    axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    names = [class_names[i] for i in keep]
    font = max(3.0, min(9.0, 220 / len(keep)))
    axis.set_xticks(range(len(keep)), names, rotation=90, fontsize=font)
    axis.set_yticks(range(len(keep)), names, fontsize=font)
    for (row, column), value in np.ndenumerate(counts):
        if value:
            axis.text(column, row, str(value), ha="center", va="center", fontsize=font * 0.8,
                      color="white" if rates[row, column] > 0.5 else "black")
    subset = "" if len(keep) == len(confusion) else f" ({len(keep)} most confused of {len(confusion)} classes)"
    axis.set(xlabel="predicted", ylabel="true", title=f"confusion, row-normalised{subset}")
    save_png(figure, path)


def plot_image_grid(images: list[np.ndarray], titles: list[str], path: Path, columns: int = 6,
                    title: str = "") -> None:
    plt = pyplot()
    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2 * columns, 2.2 * rows + 0.4), squeeze=False, layout="constrained")
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, text in zip(axes.flat, images, titles):
        axis.imshow(image, interpolation="nearest")
        axis.set_title(text, fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    save_png(figure, path)


def plot_calibration(panels: list[tuple[str, float, list[dict[str, float]]]], path: Path) -> None:
    """Reliability diagrams side by side, one per (title, ECE, bin table): the model's own probabilities, and
    after a calibration's temperature where the run has one."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5), squeeze=False, layout="constrained")
    for axis, (title, ece, table) in zip(axes.flat, panels):
        centres = [(b["low"] + b["high"]) / 2 for b in table]
        axis.bar(centres, [b["accuracy"] for b in table], width=1 / ECE_BINS, edgecolor="black", alpha=0.7,
                 label="accuracy")
        axis.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
        axis.plot(centres, [b["confidence"] for b in table], marker="o", color="red", label="mean confidence")
        axis.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy",
                 title=f"{title}: ECE {ece:.2f}% ({ECE_BINS} bins)")
        axis.legend(loc="upper left")
    save_png(figure, path)


def plot_embedding(features: np.ndarray, labels: np.ndarray, class_names: list[str], path: Path, seed: int) -> None:
    """t-SNE of the backbone features to 2-D, coloured by true class."""
    from sklearn.manifold import TSNE

    plt = pyplot()
    perplexity = float(min(30, max(2, (len(features) - 1) // 3)))
    points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        features.astype(np.float32))
    figure, axis = plt.subplots(figsize=(7, 6), layout="constrained")
    colours = plt.get_cmap("tab20" if len(class_names) > 10 else "tab10")
    for c, name in enumerate(class_names):
        inside = labels == c
        axis.scatter(points[inside, 0], points[inside, 1], s=4, color=colours(c % colours.N), label=name)
    if len(class_names) <= 20:
        axis.legend(markerscale=3, fontsize=7, loc="best")
    axis.set(title=f"backbone features, t-SNE ({len(features)} images)", xticks=[], yticks=[])
    save_png(figure, path)


def to_displayable(weights: np.ndarray) -> np.ndarray:
    """A weight tensor (3 x H x W) as an RGB image in [0, 1], stretched to its own range."""
    image = weights.transpose(1, 2, 0)
    low, high = image.min(), image.max()
    return (image - low) / (high - low) if high > low else np.zeros_like(image)
