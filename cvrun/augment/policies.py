"""Augmentation policies: aug.name -> a function (image, rng) -> image, or None."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from cvrun.augment import ops
from cvrun.errors import UserError

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]

# Images up to this size get pad-and-crop; larger ones get a random resized crop.
SMALL_IMAGE = 64

POLICIES: dict[str, Callable[[Any, int], Transform | None]] = {}


def register_policy(name: str):
    def add(fn):
        POLICIES[name] = fn
        return fn
    return add


def build_train_transform(cfg: Any, image_size: int) -> Transform | None:
    if cfg.name not in POLICIES:
        raise UserError(f"unknown aug '{cfg.name}'; valid aug options: {', '.join(sorted(POLICIES))}")
    return POLICIES[cfg.name](cfg, image_size)


def random_resized_box(h: int, w: int, rng: np.random.Generator, scale=(0.08, 1.0),
                       ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box: (top, left, height, width)."""
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side, side


def base_transform(cfg: Any, image_size: int) -> Transform:
    """Pad-crop + flip for small images, random resized crop + flip for large ones."""
    def small(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        top, left = rng.integers(0, 2 * cfg.padding + 1, 2)
        image = ops.pad_crop(image, cfg.padding, int(top), int(left))
        return ops.hflip(image) if rng.random() < cfg.hflip else image

    def large(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        top, left, height, width = random_resized_box(*image.shape[:2], rng)
        image = ops.resized_crop(image, top, left, height, width, image_size)
        return ops.hflip(image) if rng.random() < cfg.hflip else image

    return small if image_size <= SMALL_IMAGE else large


@register_policy("none")
def no_augmentation(cfg: Any, image_size: int) -> None:
    return None


@register_policy("basic")
def basic(cfg: Any, image_size: int) -> Transform:
    return base_transform(cfg, image_size)
