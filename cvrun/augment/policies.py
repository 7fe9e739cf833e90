"""Augmentation options: aug.name -> its config schema and the per-image step it builds.

A training transform is a Pipeline of steps, each (image, rng) -> image:

    [base transform if aug.base] + [the option's own step] + [random erasing if aug.erase > 0]

The base transform is pad-crop + flip for small images and random resized
crop (aug.scale, aug.ratio) + flip for large ones; for large images the
loader hands it the image at its stored, aspect-true resolution (it
`crops_stored`) and the dataset's interpolation. The plain options (brightness, flip, rotate,
crop, shear, affine) set `base: false` in their YAML so that each can be
compared alone against `none`; `aug.base=true` composes them with it. The
batch mixer (`aug.mix`) lives in mixers.py: it works on whole batches.

Adding an option is one function here (or in any module of cvrun/augment),
registered with its schema, and one YAML in configs/aug/:

    @dataclass
    class BlurOption(AugOption):
        sigma: float = 1.0

    @register_policy("blur", BlurOption)
    def blur(cfg, image_size): return lambda image, rng: cv2.GaussianBlur(image, (0, 0), cfg.sigma)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, List, Optional, Sequence

import cv2
import numpy as np
from omegaconf import OmegaConf

from cvrun.augment import ops
from cvrun.augment.auto import (AUTOAUGMENT_POLICIES, MAX_MAGNITUDE, AutoAugment, RandAugment, SampledPolicy,
                                TrivialAugmentWide, apply_ops)
from cvrun.augment.mixers import MIXERS
from cvrun.errors import require
from cvrun.registry import Registry

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]

# Images up to this size get pad-and-crop; larger ones get a random resized crop.
SMALL_IMAGE = 64


@dataclass
class AugOption:
    """The keys every aug option takes: the base transform, random erasing and a batch mixer."""

    name: str = "none"
    # base transform: pad-crop (small images) or random resized crop (large), then horizontal flip
    base: bool = False
    padding: int = 4
    hflip: float = 0.5
    # large images' random resized crop: the share of the area and the aspect (width / height) of the box
    scale: List[float] = field(default_factory=lambda: [0.08, 1.0])
    ratio: List[float] = field(default_factory=lambda: [3 / 4, 4 / 3])
    erase: float = 0.0  # probability of random erasing (cutout)
    # batch mixer on top of any option: null, cutmix or mixup, with Beta(alpha, alpha) on a share prob of batches
    mix: Optional[str] = None
    alpha: float = 1.0
    prob: float = 1.0

    def check(self) -> None:
        for key in ("hflip", "erase", "prob"):
            require(0 <= getattr(self, key) <= 1,
                    f"aug.{key} is a probability and must be in [0, 1], got {getattr(self, key)}")
        require(self.padding >= 0, f"aug.padding must be >= 0, got {self.padding}")
        require(len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1] <= 1,
                f"aug.scale must be [low, high] with 0 < low <= high <= 1, got {list(self.scale)}")
        require(len(self.ratio) == 2 and 0 < self.ratio[0] <= self.ratio[1],
                f"aug.ratio (the box's width / height) must be [low, high] with 0 < low <= high, got "
                f"{list(self.ratio)}")
        require(self.mix is None or self.mix in MIXERS,
                f"aug.mix must be null or one of {', '.join(MIXERS)}, got {self.mix}")
        require(self.alpha > 0, f"aug.alpha (Beta distribution of the mixing weight) must be > 0, got {self.alpha}")


@dataclass
class Policy:
    """A registered aug option: its schema and the function building its per-image step (None: no step)."""

    config: type
    build: Callable[[Any, int], Transform | None]


POLICIES: Registry[Policy] = Registry("aug")


def register_policy(name: str, config: type = AugOption):
    def add(build: Callable[[Any, int], Transform | None]) -> Callable[[Any, int], Transform | None]:
        POLICIES.register(name)(Policy(config, build))
        return build
    return add


@dataclass
class Pipeline:
    """Steps applied in order; each draws its randomness from the same per-image Generator."""

    steps: list[Transform] = field(default_factory=list)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for step in self.steps:
            image = step(image, rng)
        return image

    @property
    def crops_stored(self) -> bool:
        """Whether the first step draws a resized crop from whatever image it gets (so a large image can come at
        its stored resolution, rather than as the evaluation square)."""
        return bool(self.steps) and isinstance(self.steps[0], RandomResizedCrop)

    def with_interpolation(self, interpolation: int) -> "Pipeline":
        """The same steps, its resized crop resizing with an OpenCV interpolation flag (dataset.interpolation)."""
        return Pipeline([replace(step, interpolation=interpolation) if isinstance(step, RandomResizedCrop) else step
                         for step in self.steps])

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
    if OmegaConf.is_config(cfg):
        # The steps read their values per image: from the option's dataclass 0.2 us, from a DictConfig 8 us
        # (pad-crop + flip: 36 us an image through the DictConfig, 4 us through the dataclass).
        cfg = OmegaConf.to_object(cfg)
    steps = [base_transform(cfg, image_size)] if cfg.base else []
    own_step = POLICIES.get(cfg.name).build(cfg, image_size)
    if own_step is not None:
        steps.append(own_step)
    if cfg.erase > 0:
        steps.append(random_erasing(cfg.erase, np.array([round(255 * m) for m in mean], dtype=np.uint8)))
    return Pipeline(steps) if steps else None


def random_resized_box(h: int, w: int, rng: np.random.Generator, scale=(0.08, 1.0),
                       ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box (top, left, height, width), with its fallback after ten misses: the
    whole image, or its central part of the nearest allowed aspect."""
    box = ops.random_box(h, w, rng, scale, ratio)
    if box is not None:
        return box
    height, width = h, w
    if w / h < min(ratio):
        height = int(round(w / min(ratio)))
    elif w / h > max(ratio):
        width = int(round(h * max(ratio)))
    return (h - height) // 2, (w - width) // 2, height, width


def _maybe_hflip(image: np.ndarray, rng: np.random.Generator, probability: float) -> np.ndarray:
    return ops.hflip(image) if rng.random() < probability else image


@dataclass
class RandomResizedCrop:
    """torchvision's RandomResizedCrop (box drawn on the image as given), then a horizontal flip."""

    size: int
    scale: tuple[float, float]
    ratio: tuple[float, float]
    hflip: float
    interpolation: int = cv2.INTER_LINEAR

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        top, left, height, width = random_resized_box(*image.shape[:2], rng, self.scale, self.ratio)
        crop = ops.resized_crop(image, top, left, height, width, self.size, self.interpolation)
        return _maybe_hflip(crop, rng, self.hflip)


def base_transform(cfg: Any, image_size: int) -> Transform:
    """Pad-crop + flip for small images, random resized crop + flip for large ones."""
    def small(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        top, left = ops.randint(rng, 0, 2 * cfg.padding + 1), ops.randint(rng, 0, 2 * cfg.padding + 1)
        return _maybe_hflip(ops.pad_crop(image, cfg.padding, top, left), rng, cfg.hflip)

    if image_size <= SMALL_IMAGE:
        return small
    return RandomResizedCrop(image_size, tuple(cfg.scale), tuple(cfg.ratio), cfg.hflip)


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


@dataclass
class BrightnessOption(AugOption):
    shift: int = 32  # largest offset on the 0-255 scale

    def check(self) -> None:
        super().check()
        require(0 <= self.shift <= 255, f"aug.shift must be in [0, 255], got {self.shift}")


@register_policy("brightness", BrightnessOption)
def brightness(cfg: Any, image_size: int) -> Transform:
    """Add one offset, uniform in [-aug.shift, aug.shift], to every channel, clipped to 0-255."""
    def step(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return ops.brightness_shift(image, int(round(rng.uniform(-cfg.shift, cfg.shift))))
    return step


@dataclass
class FlipOption(AugOption):
    vflip: float = 0.5  # probability of a vertical flip (hflip: of a horizontal one)

    def check(self) -> None:
        super().check()
        require(0 <= self.vflip <= 1, f"aug.vflip is a probability and must be in [0, 1], got {self.vflip}")


@register_policy("flip", FlipOption)
def flip(cfg: Any, image_size: int) -> Transform:
    def step(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        image = _maybe_hflip(image, rng, cfg.hflip)
        return ops.vflip(image) if rng.random() < cfg.vflip else image
    return step


@dataclass
class RotateOption(AugOption):
    degrees: float = 15.0  # largest angle
    rot90: float = 0.0  # probability of a 90/180/270 quarter turn first

    def check(self) -> None:
        super().check()
        require(self.degrees >= 0, f"aug.degrees must be >= 0, got {self.degrees}")
        require(0 <= self.rot90 <= 1, f"aug.rot90 is a probability and must be in [0, 1], got {self.rot90}")


@register_policy("rotate", RotateOption)
def rotate(cfg: Any, image_size: int) -> Transform:
    """A quarter turn (90/180/270, probability aug.rot90), then an angle uniform in +-aug.degrees."""
    def step(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < cfg.rot90:
            image = ops.rotate90(image, ops.randint(rng, 1, 4))
        if cfg.degrees > 0:
            image = ops.rotate_bilinear(image, rng.uniform(-cfg.degrees, cfg.degrees))
        return image
    return step


@dataclass
class CropOption(AugOption):
    scale: List[float] = field(default_factory=lambda: [0.25, 1.0])  # share of the area kept


@register_policy("crop", CropOption)
def crop(cfg: Any, image_size: int) -> Transform:
    """A random resized crop covering aug.scale of the area (aspect in aug.ratio), at any image size."""
    scale, ratio = tuple(cfg.scale), tuple(cfg.ratio)

    def step(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        top, left, height, width = random_resized_box(*image.shape[:2], rng, scale=scale, ratio=ratio)
        return ops.resized_crop(image, top, left, height, width, image_size)
    return step


@dataclass
class ShearOption(AugOption):
    shear: float = 0.3  # largest shear factor per axis

    def check(self) -> None:
        super().check()
        require(self.shear >= 0, f"aug.shear must be >= 0, got {self.shear}")


@register_policy("shear", ShearOption)
def shear(cfg: Any, image_size: int) -> Transform:
    """Shear along x and y, each factor uniform in +-aug.shear."""
    def step(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        sx, sy = rng.uniform(-cfg.shear, cfg.shear, 2)
        return ops.shear_bilinear(image, float(sx), float(sy))
    return step


@dataclass
class AffineOption(AugOption):
    distortion: float = 0.1  # largest corner move, as a share of the side
    perspective: float = 0.0  # probability of a four-corner perspective warp instead

    def check(self) -> None:
        super().check()
        require(0 <= self.distortion < 0.5, f"aug.distortion must be in [0, 0.5), got {self.distortion}")
        require(0 <= self.perspective <= 1,
                f"aug.perspective is a probability and must be in [0, 1], got {self.perspective}")


@register_policy("affine", AffineOption)
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


@dataclass
class RandAugOption(AugOption):
    n: int = 2  # ops per image
    m: float = 9.0  # magnitude on torchvision's 0-30 scale

    def check(self) -> None:
        super().check()
        require(self.n >= 0, f"aug.n (RandAugment ops per image) must be >= 0, got {self.n}")
        require(0 <= self.m <= MAX_MAGNITUDE,
                f"aug.m (RandAugment magnitude) must be in [0, {MAX_MAGNITUDE}], got {self.m}")


@register_policy("randaug", RandAugOption)
def randaug(cfg: Any, image_size: int) -> Transform:
    return RandAugment(n=cfg.n, m=cfg.m)


@dataclass
class RandAugCutoutOption(RandAugOption):
    cutout: float = 0.5  # side of the square cut out, as a share of the image side (FixMatch: 16 px at 32 px)

    def check(self) -> None:
        super().check()
        require(0 <= self.cutout <= 1, f"aug.cutout (a share of the image side) must be in [0, 1], got {self.cutout}")


# FixMatch's cutout colour (its reference implementation's grey).
CUTOUT_FILL = np.array([127, 127, 127], dtype=np.uint8)


@register_policy("randaug_cutout", RandAugCutoutOption)
def randaug_cutout(cfg: Any, image_size: int) -> Transform:
    """FixMatch's strong view: RandAugment, then a square of aug.cutout x the side, centred anywhere, greyed out."""
    policy = RandAugment(n=cfg.n, m=cfg.m)

    def step(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        image = policy(image, rng)
        h, w = image.shape[:2]
        side = round(cfg.cutout * h)
        cy, cx = ops.randint(rng, 0, h), ops.randint(rng, 0, w)
        top, left = max(0, cy - side // 2), max(0, cx - side // 2)
        return ops.erase(image, top, left, min(h, cy + side - side // 2) - top, min(w, cx + side - side // 2) - left,
                         CUTOUT_FILL)
    return step


@dataclass
class AutoAugOption(AugOption):
    policy: str = "cifar10"  # the learned policy: cifar10, imagenet or svhn

    def check(self) -> None:
        super().check()
        require(self.policy in AUTOAUGMENT_POLICIES,
                f"aug.policy must be one of {', '.join(AUTOAUGMENT_POLICIES)}, got {self.policy}")


@register_policy("autoaug", AutoAugOption)
def autoaug(cfg: Any, image_size: int) -> Transform:
    return AutoAugment(policy=cfg.policy)


@register_policy("trivialaug")
def trivialaug(cfg: Any, image_size: int) -> Transform:
    return TrivialAugmentWide()
