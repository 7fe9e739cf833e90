"""Per-image ops with OpenCV/NumPy on uint8 HWC RGB arrays.

They are several times faster than torchvision's tensor ops on small images
(benchmarks/augment.py measures it). Each op takes the image and values that
were already drawn; randomness lives in the policies.

`OPS` holds the value ops the auto-augment policies draw from: each is
called as `OPS[name](image, value)` with the value in the units torchvision's
auto-augment code hands its own op (degrees for rotate, the shear factor for
shear_*, pixels for translate_*, `factor - 1` for the enhance ops, bits for
posterize, the 0-255 threshold for solarize). An op is one function,
registered with what a policy needs to draw its value and what a test needs to
check it:

    @register_op("rotate", magnitude=scaled(30.0), wide=scaled(135.0), signed=True, torchvision="Rotate")
    def rotate(image, value): ...

`magnitude` maps a level in [0, 1] (and the image size) to the value on
RandAugment's and AutoAugment's scale, `wide` on TrivialAugment-Wide's;
`signed` ops are negated half of the time; `torchvision` names the op in
torchvision's auto-augment code (reference.py applies it). With nearest
interpolation and fill 0 they reproduce torchvision.transforms.v2 up to
rounding (tests/augment/test_ops.py states the tolerance per op). Most colour
ops work through 256-entry lookup tables computed in float32 the way
torchvision computes each pixel, so they agree exactly; color, contrast and
sharpness take the grayscale or the blend from one OpenCV call and may differ
by 1 in rare pixels.

The functions after the registered ops are the building blocks of the plain
options (flip, rotate, crop, shear, affine, brightness, erasing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import cv2
import numpy as np

from cvrun.registry import Registry

OpFunction = Callable[[np.ndarray, float], np.ndarray]
# A magnitude level in [0, 1] and the image's height and width -> the op's value.
Magnitude = Callable[[float, int, int], float]


@dataclass(frozen=True)
class Op:
    """A registered op: its function, called as op(image, value), and how the policies draw its value."""

    name: str
    apply: OpFunction
    magnitude: Optional[Magnitude] = None  # RandAugment's and AutoAugment's scale; None: the op takes no value
    wide: Optional[Magnitude] = None  # TrivialAugment-Wide's scale; None: the same as magnitude
    signed: bool = False  # the policies negate the value with probability 0.5
    torchvision: Optional[str] = None  # the op's name in torchvision's auto-augment code, if it has one
    torchvision_unit: float = 1.0  # torchvision's magnitude is value / torchvision_unit

    def __call__(self, image: np.ndarray, value: float = 0.0) -> np.ndarray:
        return self.apply(image, value)

    def value(self, level: float, height: int, width: int, wide: bool = False) -> float:
        """The op's value at a magnitude level in [0, 1], before any sign flip."""
        scale = self.wide if wide and self.wide is not None else self.magnitude
        return 0.0 if scale is None else scale(level, height, width)


OPS: Registry[Op] = Registry("augmentation op")


def register_op(name: str, magnitude: Optional[Magnitude] = None, wide: Optional[Magnitude] = None,
                signed: bool = False, torchvision: Optional[str] = None,
                torchvision_unit: float = 1.0) -> Callable[[OpFunction], OpFunction]:
    """Register `function(image, value) -> image` as OPS[name], with its scales, sign and torchvision name."""
    def add(function: OpFunction) -> OpFunction:
        OPS.register(name)(Op(name, function, magnitude, wide, signed, torchvision, torchvision_unit))
        return function
    return add


def scaled(top: float) -> Magnitude:
    """A value growing linearly from 0 at level 0 to `top` at level 1."""
    return lambda level, height, width: top * level


def share_of_width(share: float) -> Magnitude:
    """`share` of the image width at level 1 (RandAugment's translate: 150 px of 331)."""
    return lambda level, height, width: share * width * level


def share_of_height(share: float) -> Magnitude:
    return lambda level, height, width: share * height * level


def bits_kept(removed_at_top: int) -> Magnitude:
    """Posterize's bits: 8 at level 0, 8 - removed_at_top at level 1, rounded."""
    return lambda level, height, width: float(round(8 - removed_at_top * level))


def solarize_threshold(level: float, height: int, width: int) -> float:
    """255 at level 0 (nothing inverted), 0 at level 1 (everything)."""
    return 255.0 * (1.0 - level)

_LEVELS = np.arange(256, dtype=np.float32)
# torchvision's rgb_to_grayscale weights; the offset floors instead of rounding (see _TRUNCATE).
_GRAY_TRANSFORM = np.array([[0.2989, 0.587, 0.114, -0.5 + 1e-3]], dtype=np.float32)
_SHARPEN_KERNEL = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32) / 13.0


def _apply_lut(image: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Map every pixel through a (256,) table, or a (256, 3) table per channel."""
    # np.minimum/maximum: a third of np.clip's call overhead on 256 entries.
    lut = np.minimum(np.maximum(lut, 0), 255).astype(np.uint8)  # float -> uint8 truncates, as torch's .to(uint8)
    return cv2.LUT(image, lut if lut.ndim == 1 else np.ascontiguousarray(lut).reshape(1, 256, 3))


def _blend(pixels: np.ndarray, other: float, factor: float) -> np.ndarray:
    """torchvision's _blend, x * factor + other * (1 - factor), for a lookup table, with its float32 rounding.

    torch rounds x * factor to float32, then adds (1 - factor) * other with a
    fused multiply-add; the float64 sum of those float32 values rounds the same way.
    """
    scaled = (pixels * np.float32(factor)).astype(np.float64)
    return (scaled + np.float64(np.float32(1.0 - factor)) * np.float32(other)).astype(np.float32)


# Offset that makes OpenCV's round-to-nearest on uint8 output act as torchvision's truncation
# (floor for values >= 0); a value within 0.001 below an integer may come out one higher.
_TRUNCATE = -0.5 + 1e-3


def _blend_u8(image: np.ndarray, other: np.ndarray, factor: float) -> np.ndarray:
    """Whole-image _blend in one OpenCV pass; faster than NumPy float arrays and within 1 of torchvision."""
    return cv2.addWeighted(image, factor, other, 1.0 - factor, _TRUNCATE)


def _grayscale(image: np.ndarray) -> np.ndarray:
    """torchvision's grayscale of a uint8 image, floored (HxW uint8)."""
    return cv2.transform(image, _GRAY_TRANSFORM)


@register_op("identity", torchvision="Identity")
def identity(image: np.ndarray, value: float = 0.0) -> np.ndarray:
    return image


@register_op("brightness", magnitude=scaled(0.9), wide=scaled(0.99), signed=True, torchvision="Brightness")
def brightness(image: np.ndarray, value: float) -> np.ndarray:
    return _apply_lut(image, _LEVELS * np.float32(1.0 + value))


@register_op("color", magnitude=scaled(0.9), wide=scaled(0.99), signed=True, torchvision="Color")
def color(image: np.ndarray, value: float) -> np.ndarray:
    """Saturation: blend with the grayscale image."""
    return _blend_u8(image, cv2.cvtColor(_grayscale(image), cv2.COLOR_GRAY2RGB), 1.0 + value)


@register_op("contrast", magnitude=scaled(0.9), wide=scaled(0.99), signed=True, torchvision="Contrast")
def contrast(image: np.ndarray, value: float) -> np.ndarray:
    """Blend with the mean grayscale level."""
    return _apply_lut(image, _blend(_LEVELS, cv2.mean(_grayscale(image))[0], 1.0 + value))


@register_op("sharpness", magnitude=scaled(0.9), wide=scaled(0.99), signed=True, torchvision="Sharpness")
def sharpness(image: np.ndarray, value: float) -> np.ndarray:
    """Blend with a smoothed copy; the one-pixel border stays as it is, as in PIL and torchvision."""
    h, w = image.shape[:2]
    if h <= 2 or w <= 2:
        return image
    out = _blend_u8(image, cv2.filter2D(image, -1, _SHARPEN_KERNEL), 1.0 + value)
    out[[0, -1]] = image[[0, -1]]
    out[:, [0, -1]] = image[:, [0, -1]]
    return out


@register_op("posterize", magnitude=bits_kept(4), wide=bits_kept(6), torchvision="Posterize")
def posterize(image: np.ndarray, value: float) -> np.ndarray:
    bits = int(value)
    if bits >= 8:
        return image
    return image & np.uint8(((1 << bits) - 1) << (8 - bits))


@register_op("solarize", magnitude=solarize_threshold, torchvision="Solarize", torchvision_unit=255.0)
def solarize(image: np.ndarray, value: float) -> np.ndarray:
    """Invert every pixel at or above the threshold (0-255)."""
    return _apply_lut(image, np.where(_LEVELS >= value, 255 - _LEVELS, _LEVELS))


@register_op("autocontrast", torchvision="AutoContrast")
def autocontrast(image: np.ndarray, value: float = 0.0) -> np.ndarray:
    """Stretch each channel to the full 0-255 range."""
    low, high = np.array([cv2.minMaxLoc(channel)[:2] for channel in cv2.split(image)], dtype=np.float32).T
    flat_channel = low == high
    inv_scale = (high - low) * np.float32(1.0 / 255)
    low[flat_channel], inv_scale[flat_channel] = 0.0, 1.0
    return _apply_lut(image, (_LEVELS[:, None] - low) / inv_scale)


@register_op("equalize", torchvision="Equalize")
def equalize(image: np.ndarray, value: float = 0.0) -> np.ndarray:
    """Per-channel histogram equalisation with PIL's lookup-table rounding, as torchvision does it."""
    hist = np.stack([cv2.calcHist([image], [c], None, [256], [0, 256]).ravel() for c in range(3)]).astype(np.int64)
    top_count = hist[np.arange(3), 255 - np.argmax(hist[:, ::-1] > 0, axis=1)]
    step = (image.shape[0] * image.shape[1] - top_count) // 255
    cumulative = np.cumsum(hist, axis=1)[:, :-1]
    tables = np.zeros((3, 256), dtype=np.int64)
    tables[:, 1:] = (cumulative + (step // 2)[:, None]) // np.maximum(step, 1)[:, None]
    tables[step == 0] = np.arange(256)  # a single-level channel stays as it is
    return _apply_lut(image, tables.T)


@register_op("invert", torchvision="Invert")
def invert(image: np.ndarray, value: float = 0.0) -> np.ndarray:
    return cv2.bitwise_not(image)


def _warp_nearest(image: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """Output pixel (x, y) takes input pixel inverse @ (x, y, 1), nearest, fill 0."""
    h, w = image.shape[:2]
    return cv2.warpAffine(image, inverse, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


@register_op("rotate", magnitude=scaled(30.0), wide=scaled(135.0), signed=True, torchvision="Rotate")
def rotate(image: np.ndarray, value: float) -> np.ndarray:
    """Counter-clockwise by `value` degrees about the image centre."""
    h, w = image.shape[:2]
    forward = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), value, 1.0)
    return _warp_nearest(image, cv2.invertAffineTransform(forward))


# torchvision shears about the top-left corner of the top-left pixel, i.e. (-0.5, -0.5) in pixel indices.
@register_op("shear_x", magnitude=scaled(0.3), wide=scaled(0.99), signed=True, torchvision="ShearX")
def shear_x(image: np.ndarray, value: float) -> np.ndarray:
    return _warp_nearest(image, np.array([[1.0, value, 0.5 * value], [0.0, 1.0, 0.0]]))


@register_op("shear_y", magnitude=scaled(0.3), wide=scaled(0.99), signed=True, torchvision="ShearY")
def shear_y(image: np.ndarray, value: float) -> np.ndarray:
    return _warp_nearest(image, np.array([[1.0, 0.0, 0.0], [value, 1.0, 0.5 * value]]))


def _shift(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Move content right by dx and down by dy pixels, filling with 0 (array slicing, no resampling)."""
    h, w = image.shape[:2]
    out = np.zeros_like(image)
    if abs(dx) < w and abs(dy) < h:
        out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            image[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


@register_op("translate_x", magnitude=share_of_width(150.0 / 331.0), wide=scaled(32.0), signed=True,
             torchvision="TranslateX")
def translate_x(image: np.ndarray, value: float) -> np.ndarray:
    return _shift(image, int(value), 0)


@register_op("translate_y", magnitude=share_of_height(150.0 / 331.0), wide=scaled(32.0), signed=True,
             torchvision="TranslateY")
def translate_y(image: np.ndarray, value: float) -> np.ndarray:
    return _shift(image, 0, int(value))


# Building blocks of the plain options.

def hflip(image: np.ndarray) -> np.ndarray:
    return image[:, ::-1]


def vflip(image: np.ndarray) -> np.ndarray:
    return image[::-1]


_ROTATE_90 = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}


def rotate90(image: np.ndarray, quarter_turns: int) -> np.ndarray:
    """Rotate by quarter_turns x 90 degrees counter-clockwise (cv2.rotate, exact)."""
    quarter_turns %= 4
    return image if quarter_turns == 0 else cv2.rotate(image, _ROTATE_90[quarter_turns])


def pad_crop(image: np.ndarray, padding: int, top: int, left: int) -> np.ndarray:
    """Zero-pad by `padding` on each side, then crop the original size at (top, left)."""
    h, w = image.shape[:2]
    padded = cv2.copyMakeBorder(image, padding, padding, padding, padding, cv2.BORDER_CONSTANT, value=0)
    return padded[top:top + h, left:left + w]


def resized_crop(image: np.ndarray, top: int, left: int, height: int, width: int, size: int,
                 interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """The box resized to size x size with an OpenCV interpolation flag; a box twice that or more in both axes
    is area-averaged instead (INTER_AREA: antialiased, as torchvision's RandomResizedCrop; nearest stays nearest;
    cvrun.data.samples.resize says why not below 2x)."""
    crop = image[top:top + height, left:left + width]
    if interpolation != cv2.INTER_NEAREST and height >= 2 * size and width >= 2 * size:
        interpolation = cv2.INTER_AREA
    return cv2.resize(crop, (size, size), interpolation=interpolation)


def rotate_bilinear(image: np.ndarray, degrees: float) -> np.ndarray:
    """Counter-clockwise about the centre with bilinear interpolation, fill 0 (the plain `rotate` option)."""
    h, w = image.shape[:2]
    forward = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)
    return cv2.warpAffine(image, forward, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)


def shear_bilinear(image: np.ndarray, shear_x: float, shear_y: float) -> np.ndarray:
    """Shear about the centre with bilinear interpolation, fill 0 (the plain `shear` option)."""
    h, w = image.shape[:2]
    cx, cy = (w - 1) / 2, (h - 1) / 2
    inverse = np.array([[1.0, shear_x, -shear_x * cy], [shear_y, 1.0, -shear_y * cx]])
    return cv2.warpAffine(image, inverse, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=0)


def affine_three_points(image: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The affine map that sends three source points to three target points (each (3, 2) float32)."""
    h, w = image.shape[:2]
    matrix = cv2.getAffineTransform(source.astype(np.float32), target.astype(np.float32))
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)


def perspective(image: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The projective map that sends four source corners to four target corners (each (4, 2) float32)."""
    h, w = image.shape[:2]
    matrix = cv2.getPerspectiveTransform(source.astype(np.float32), target.astype(np.float32))
    return cv2.warpPerspective(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)


def brightness_shift(image: np.ndarray, delta: int) -> np.ndarray:
    """Add `delta` to every channel, clipped to 0-255 (never wraps around as uint8 arithmetic would)."""
    return _apply_lut(image, _LEVELS + np.float32(delta))


def erase(image: np.ndarray, top: int, left: int, height: int, width: int, fill: np.ndarray) -> np.ndarray:
    """Cutout / random erasing: fill a box with one colour."""
    out = image.copy()
    out[top:top + height, left:left + width] = fill
    return out


def randint(rng: np.random.Generator, low: int, high: int) -> int:
    """Uniform integer in [low, high); Generator.integers costs ten times as much per call."""
    return low + int(rng.random() * (high - low))


def random_box(h: int, w: int, rng: np.random.Generator, scale: tuple[float, float],
               ratio: tuple[float, float]) -> tuple[int, int, int, int] | None:
    """A box of area fraction in `scale` and aspect in `ratio` (torchvision's sampling), or None."""
    for _ in range(10):
        area = h * w * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        bw, bh = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < bw <= w and 0 < bh <= h:
            return randint(rng, 0, h - bh + 1), randint(rng, 0, w - bw + 1), bh, bw
    return None
