"""Augmentation options: aug.name -> the per-image step of that option.

A training transform is a Pipeline of steps, each (image, rng) -> image:

    [base transform if aug.base] + [the option's own step] + [random erasing if aug.erase > 0]

The base transform is pad-crop + flip for small images and random resized
crop + flip for large ones. The plain options (brightness, flip, rotate,
crop, shear, affine) set `base: false` in their YAML so that each can be
compared alone against `none`; `aug.base=true` composes them with it. The
batch mixer (`aug.mix`) lives in mixers.py: it works on whole batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from cvrun.augment import ops
from cvrun.augment.auto import AutoAugment, RandAugment, SampledPolicy, TrivialAugmentWide, apply_ops
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


@dataclass
class Pipeline:
    """Steps applied in order; each draws its randomness from the same per-image Generator."""

    steps: list[Transform] = field(default_factory=list)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for step in self.steps:
            image = step(image, rng)
        return image

    def explained(self, image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[str, float]]]:
        """The same result as calling the pipeline, plus the (op, value) pairs its auto-augment step drew."""
        drawn: list[tuple[str, float]] = []
        for step in self.steps:
            if isinstance(step, SampledPolicy):
                ops_drawn = step.sample(rng, *image.shape[:2])
                image = apply_ops(image, ops_drawn)
                drawn += ops_drawn
            else:
                image = step(image, rng)
        return image, drawn


def build_train_transform(cfg: Any, image_size: int, mean: Sequence[float] = (0.0, 0.0, 0.0)) -> Pipeline | None:
    """The per-image training transform of `aug`; `mean` (dataset.mean, 0-1) is the erasing colour."""
    if cfg.name not in POLICIES:
        raise UserError(f"unknown aug '{cfg.name}'; valid aug options: {', '.join(sorted(POLICIES))}")
    steps = [base_transform(cfg, image_size)] if cfg.base else []
    own_step = POLICIES[cfg.name](cfg, image_size)
    if own_step is not None:
        steps.append(own_step)
    if cfg.erase > 0:
        steps.append(random_erasing(cfg.erase, np.array([round(255 * m) for m in mean], dtype=np.uint8)))
    return Pipeline(steps) if steps else None


def random_resized_box(h: int, w: int, rng: np.random.Generator, scale=(0.08, 1.0),
                       ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box (top, left, height, width); the central square as fallback."""
    box = ops.random_box(h, w, rng, scale, ratio)
    if box is not None:
        return box
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side, side


def _maybe_hflip(image: np.ndarray, rng: np.random.Generator, probability: float) -> np.ndarray:
    return ops.hflip(image) if rng.random() < probability else image


def base_transform(cfg: Any, image_size: int) -> Transform:
    """Pad-crop + flip for small images, random resized crop + flip for large ones."""
    def small(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        top, left = ops.randint(rng, 0, 2 * cfg.padding + 1), ops.randint(rng, 0, 2 * cfg.padding + 1)
        return _maybe_hflip(ops.pad_crop(image, cfg.padding, top, left), rng, cfg.hflip)

    def large(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        top, left, height, width = random_resized_box(*image.shape[:2], rng)
        return _maybe_hflip(ops.resized_crop(image, top, left, height, width, image_size), rng, cfg.hflip)

    return small if image_size <= SMALL_IMAGE else large


def random_erasing(probability: float, fill: np.ndarray) -> Transform:
    """Cutout / random erasing with torchvision's box sampling (2-33% of the area, aspect 0.3-3.3).

    The box takes the dataset's mean colour, which normalisation maps to 0:
    the same as torchvision's RandomErasing(value=0) placed after Normalize.
    """
    def step(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= probability:
            return image
        box = ops.random_box(*image.shape[:2], rng, scale=(0.02, 0.33), ratio=(0.3, 3.3))
        return image if box is None else ops.erase(image, *box, fill)
    return step


@register_policy("none")
def no_augmentation(cfg: Any, image_size: int) -> None:
    return None


@register_policy("basic")
def basic(cfg: Any, image_size: int) -> None:
    """The base transform alone (its YAML sets base: true)."""
    return None


@register_policy("cutmix")
@register_policy("mixup")
def batch_mixing(cfg: Any, image_size: int) -> None:
    """Per image only the base transform; the mixer is chosen by aug.mix (see mixers.py)."""
    return None


@register_policy("brightness")
def brightness(cfg: Any, image_size: int) -> Transform:
    """Add one offset, uniform in [-aug.shift, aug.shift], to every channel, clipped to 0-255."""
    def step(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return ops.brightness_shift(image, int(round(rng.uniform(-cfg.shift, cfg.shift))))
    return step


@register_policy("flip")
def flip(cfg: Any, image_size: int) -> Transform:
    def step(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        image = _maybe_hflip(image, rng, cfg.hflip)
        return ops.vflip(image) if rng.random() < cfg.vflip else image
    return step


@register_policy("rotate")
def rotate(cfg: Any, image_size: int) -> Transform:
    """A quarter turn (90/180/270, probability aug.rot90), then an angle uniform in +-aug.degrees."""
    def step(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < cfg.rot90:
            image = ops.rotate90(image, ops.randint(rng, 1, 4))
        if cfg.degrees > 0:
            image = ops.rotate_bilinear(image, rng.uniform(-cfg.degrees, cfg.degrees))
        return image
    return step


@register_policy("crop")
def crop(cfg: Any, image_size: int) -> Transform:
    """A random resized crop covering aug.scale of the area, at any image size."""
    scale = tuple(cfg.scale)

    def step(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        top, left, height, width = random_resized_box(*image.shape[:2], rng, scale=scale)
        return ops.resized_crop(image, top, left, height, width, image_size)
    return step


@register_policy("shear")
def shear(cfg: Any, image_size: int) -> Transform:
    """Shear along x and y, each factor uniform in +-aug.shear."""
    def step(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        sx, sy = rng.uniform(-cfg.shear, cfg.shear, 2)
        return ops.shear_bilinear(image, float(sx), float(sy))
    return step


@register_policy("affine")
def affine(cfg: Any, image_size: int) -> Transform:
    """Move three corners (or, with probability aug.perspective, all four) by up to aug.distortion x side."""
    def step(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape[:2]
        corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=np.float32)
        moved = corners + rng.uniform(-cfg.distortion, cfg.distortion, corners.shape) * np.array([w, h])
        if rng.random() < cfg.perspective:
            return ops.perspective(image, corners, moved)
        return ops.affine_three_points(image, corners[:3], moved[:3])
    return step


@register_policy("randaug")
def randaug(cfg: Any, image_size: int) -> Transform:
    return RandAugment(n=cfg.n, m=cfg.m)


@register_policy("autoaug")
def autoaug(cfg: Any, image_size: int) -> Transform:
    return AutoAugment(policy=cfg.policy)


@register_policy("trivialaug")
def trivialaug(cfg: Any, image_size: int) -> Transform:
    return TrivialAugmentWide()
