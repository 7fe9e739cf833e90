"""RandAugment, AutoAugment and TrivialAugment-Wide over the OPS registry.

Sampling follows torchvision.transforms.v2 (same op lists, magnitude scales
and sign flips), drawing from the numpy Generator the loader hands each image.
Each policy owns the list of ops it draws from, so registering a new op
changes no existing policy's draws; each op brings its own scale and sign
(ops.py). `sample` returns the drawn (op, value) pairs so a preview or a test
can see them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cvrun.augment.ops import OPS, Op, randint

# The 14 ops of torchvision's RandAugment and TrivialAugmentWide, in its order: the order is part of the draws.
TORCHVISION_AUGMENT_OPS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness",
                           "color", "contrast", "sharpness", "posterize", "solarize", "autocontrast", "equalize")

MAX_MAGNITUDE = 30  # torchvision's RandAugment: 31 magnitude bins, 0..30


def apply_ops(image: np.ndarray, drawn: list[tuple[str, float]]) -> np.ndarray:
    for op, value in drawn:
        image = OPS[op].apply(image, value)
    return image


def _signed(op: Op, value: float, rng: np.random.Generator) -> float:
    return -value if op.signed and rng.random() <= 0.5 else value


class SampledPolicy:
    """A policy that draws (op, value) pairs with `sample` and applies them in order."""

    def sample(self, rng: np.random.Generator, height: int, width: int) -> list[tuple[str, float]]:
        raise NotImplementedError

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return apply_ops(image, self.sample(rng, *image.shape[:2]))


def _registered(names: tuple[str, ...]) -> tuple[Op, ...]:
    """The ops a policy lists, looked up once (an unknown name is refused with the registry's did-you-mean)."""
    return tuple(OPS.get(name) for name in names)


@dataclass
class RandAugment(SampledPolicy):
    """`n` ops drawn uniformly (with replacement) from `ops`, all at magnitude `m` of 30."""

    n: int
    m: float
    ops: tuple[str, ...] = TORCHVISION_AUGMENT_OPS
    _ops: tuple[Op, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._ops = _registered(self.ops)

    def sample(self, rng: np.random.Generator, height: int, width: int) -> list[tuple[str, float]]:
        level = self.m / MAX_MAGNITUDE
        ops = [self._ops[randint(rng, 0, len(self._ops))] for _ in range(self.n)]
        return [(op.name, _signed(op, op.value(level, height, width), rng)) for op in ops]


@dataclass
class TrivialAugmentWide(SampledPolicy):
    """One op drawn uniformly from `ops`, at a magnitude drawn uniformly from 31 levels of its wide scale."""

    ops: tuple[str, ...] = TORCHVISION_AUGMENT_OPS
    _ops: tuple[Op, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._ops = _registered(self.ops)

    def sample(self, rng: np.random.Generator, height: int, width: int) -> list[tuple[str, float]]:
        op = self._ops[randint(rng, 0, len(self._ops))]
        level = randint(rng, 0, MAX_MAGNITUDE + 1) / MAX_MAGNITUDE
        return [(op.name, _signed(op, op.value(level, height, width, wide=True), rng))]


# AutoAugment's learned policies (Cubuk et al. 2019, as torchvision ships them): 25 sub-policies of two
# (op, probability, magnitude level 0-9) steps each; magnitude None for ops without one.
AUTOAUGMENT_POLICIES: dict[str, list[tuple[tuple[str, float, int | None], ...]]] = {
    "imagenet": [
        (("posterize", 0.4, 8), ("rotate", 0.6, 9)), (("solarize", 0.6, 5), ("autocontrast", 0.6, None)),
        (("equalize", 0.8, None), ("equalize", 0.6, None)), (("posterize", 0.6, 7), ("posterize", 0.6, 6)),
        (("equalize", 0.4, None), ("solarize", 0.2, 4)), (("equalize", 0.4, None), ("rotate", 0.8, 8)),
        (("solarize", 0.6, 3), ("equalize", 0.6, None)), (("posterize", 0.8, 5), ("equalize", 1.0, None)),
        (("rotate", 0.2, 3), ("solarize", 0.6, 8)), (("equalize", 0.6, None), ("posterize", 0.4, 6)),
        (("rotate", 0.8, 8), ("color", 0.4, 0)), (("rotate", 0.4, 9), ("equalize", 0.6, None)),
        (("equalize", 0.0, None), ("equalize", 0.8, None)), (("invert", 0.6, None), ("equalize", 1.0, None)),
        (("color", 0.6, 4), ("contrast", 1.0, 8)), (("rotate", 0.8, 8), ("color", 1.0, 2)),
        (("color", 0.8, 8), ("solarize", 0.8, 7)), (("sharpness", 0.4, 7), ("invert", 0.6, None)),
        (("shear_x", 0.6, 5), ("equalize", 1.0, None)), (("color", 0.4, 0), ("equalize", 0.6, None)),
        (("equalize", 0.4, None), ("solarize", 0.2, 4)), (("solarize", 0.6, 5), ("autocontrast", 0.6, None)),
        (("invert", 0.6, None), ("equalize", 1.0, None)), (("color", 0.6, 4), ("contrast", 1.0, 8)),
        (("equalize", 0.8, None), ("equalize", 0.6, None)),
    ],
    "cifar10": [
        (("invert", 0.1, None), ("contrast", 0.2, 6)), (("rotate", 0.7, 2), ("translate_x", 0.3, 9)),
        (("sharpness", 0.8, 1), ("sharpness", 0.9, 3)), (("shear_y", 0.5, 8), ("translate_y", 0.7, 9)),
        (("autocontrast", 0.5, None), ("equalize", 0.9, None)), (("shear_y", 0.2, 7), ("posterize", 0.3, 7)),
        (("color", 0.4, 3), ("brightness", 0.6, 7)), (("sharpness", 0.3, 9), ("brightness", 0.7, 9)),
        (("equalize", 0.6, None), ("equalize", 0.5, None)), (("contrast", 0.6, 7), ("sharpness", 0.6, 5)),
        (("color", 0.7, 7), ("translate_x", 0.5, 8)), (("equalize", 0.3, None), ("autocontrast", 0.4, None)),
        (("translate_y", 0.4, 3), ("sharpness", 0.2, 6)), (("brightness", 0.9, 6), ("color", 0.2, 8)),
        (("solarize", 0.5, 2), ("invert", 0.0, None)), (("equalize", 0.2, None), ("autocontrast", 0.6, None)),
        (("equalize", 0.2, None), ("equalize", 0.6, None)), (("color", 0.9, 9), ("equalize", 0.6, None)),
        (("autocontrast", 0.8, None), ("solarize", 0.2, 8)), (("brightness", 0.1, 3), ("color", 0.7, 0)),
        (("solarize", 0.4, 5), ("autocontrast", 0.9, None)), (("translate_y", 0.9, 9), ("translate_y", 0.7, 9)),
        (("autocontrast", 0.9, None), ("solarize", 0.8, 3)), (("equalize", 0.8, None), ("invert", 0.1, None)),
        (("translate_y", 0.7, 9), ("autocontrast", 0.9, None)),
    ],
    "svhn": [
        (("shear_x", 0.9, 4), ("invert", 0.2, None)), (("shear_y", 0.9, 8), ("invert", 0.7, None)),
        (("equalize", 0.6, None), ("solarize", 0.6, 6)), (("invert", 0.9, None), ("equalize", 0.6, None)),
        (("equalize", 0.6, None), ("rotate", 0.9, 3)), (("shear_x", 0.9, 4), ("autocontrast", 0.8, None)),
        (("shear_y", 0.9, 8), ("invert", 0.4, None)), (("shear_y", 0.9, 5), ("solarize", 0.2, 6)),
        (("invert", 0.9, None), ("autocontrast", 0.8, None)), (("equalize", 0.6, None), ("rotate", 0.9, 3)),
        (("shear_x", 0.9, 4), ("solarize", 0.3, 3)), (("shear_y", 0.8, 8), ("invert", 0.7, None)),
        (("equalize", 0.9, None), ("translate_y", 0.6, 6)), (("invert", 0.9, None), ("equalize", 0.6, None)),
        (("contrast", 0.3, 3), ("rotate", 0.8, 4)), (("invert", 0.8, None), ("translate_y", 0.0, 2)),
        (("shear_y", 0.7, 6), ("solarize", 0.4, 8)), (("invert", 0.6, None), ("rotate", 0.8, 4)),
        (("shear_y", 0.3, 7), ("translate_x", 0.9, 3)), (("shear_x", 0.1, 6), ("invert", 0.6, None)),
        (("solarize", 0.7, 2), ("translate_y", 0.6, 7)), (("shear_y", 0.8, 4), ("invert", 0.8, None)),
        (("shear_x", 0.7, 9), ("translate_y", 0.8, 3)), (("shear_y", 0.8, 5), ("autocontrast", 0.7, None)),
        (("shear_x", 0.7, 2), ("invert", 0.1, None)),
    ],
}
AUTOAUGMENT_LEVELS = 9  # magnitude levels 0..9


@dataclass
class AutoAugment(SampledPolicy):
    """One of the 25 sub-policies, drawn uniformly; each of its steps applies with its probability."""

    policy: str

    def sample(self, rng: np.random.Generator, height: int, width: int) -> list[tuple[str, float]]:
        sub_policies = AUTOAUGMENT_POLICIES[self.policy]
        drawn = []
        for name, probability, level in sub_policies[randint(rng, 0, len(sub_policies))]:
            if rng.random() <= probability:
                op = OPS[name]
                value = 0.0 if level is None else op.value(level / AUTOAUGMENT_LEVELS, height, width)
                drawn.append((name, _signed(op, value, rng)))
        return drawn
