"""`shapes`: coloured geometric shapes drawn with OpenCV; needs no files.

Each image is a bright shape of one class at a random position, size,
colour and rotation on a dark noisy background of a random colour. The task is easy enough to
learn in a minute on a CPU and hard enough that a broken model does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cvrun.config import DatasetConfig
from cvrun.errors import require

CLASSES = ["circle", "ring", "square", "triangle", "cross"]


def _draw(image: np.ndarray, kind: str, centre: tuple[int, int], radius: int, angle: float,
          colour: tuple[int, ...]) -> None:
    cx, cy = centre
    if kind == "circle":
        cv2.circle(image, centre, radius, colour, -1, cv2.LINE_AA)
    elif kind == "ring":
        cv2.circle(image, centre, radius, colour, max(2, radius // 3), cv2.LINE_AA)
    else:
        corners = {"square": 4, "triangle": 3, "cross": 4}[kind]
        theta = angle + np.arange(corners) * 2 * np.pi / corners
        points = np.stack([cx + radius * np.cos(theta), cy + radius * np.sin(theta)], axis=1)
        if kind == "cross":
            thickness = max(2, radius // 3)
            cv2.line(image, tuple(points[0].astype(int)), tuple(points[2].astype(int)), colour, thickness, cv2.LINE_AA)
            cv2.line(image, tuple(points[1].astype(int)), tuple(points[3].astype(int)), colour, thickness, cv2.LINE_AA)
        else:
            cv2.fillPoly(image, [points.astype(np.int32)], colour, cv2.LINE_AA)


@dataclass
class ShapesConfig(DatasetConfig):
    # How many images to generate for each split.
    train_size: int = 1200
    test_size: int = 500

    def check(self) -> None:
        super().check()
        require(self.train_size > 0 and self.test_size > 0, "dataset.train_size and dataset.test_size must be "
                f"positive, got {self.train_size} and {self.test_size}")


def generate(count: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` images (N,size,size,3 uint8) with balanced labels, fixed by `seed`."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(CLASSES)
    rng.shuffle(labels)
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        # A bright shape of random colour on a dark noisy background of another.
        background = rng.integers(0, 90, 3)
        noise = rng.normal(0, 12, (size, size, 3))
        image = np.clip(background + noise, 0, 255).astype(np.uint8)
        colour = rng.integers(140, 256, 3)
        radius = int(rng.uniform(0.2, 0.38) * size)
        centre = tuple(int(c) for c in rng.integers(radius, size - radius, 2))
        _draw(image, CLASSES[label], centre, radius, rng.uniform(0, 2 * np.pi), tuple(int(c) for c in colour))
        images[i] = image
    return images, labels.astype(np.int64)
