"""torchvision.transforms.v2's own result for each op of OPS: what tests and benchmarks compare against.

It calls the method torchvision's RandAugment/AutoAugment use to apply one op
(`_apply_image_or_video_transform`), so the comparison follows torchvision's
code rather than a copy of it.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

# Each op's name in torchvision's auto-augment code.
TORCHVISION_NAMES = {
    "identity": "Identity", "autocontrast": "AutoContrast", "equalize": "Equalize", "rotate": "Rotate",
    "solarize": "Solarize", "color": "Color", "posterize": "Posterize", "contrast": "Contrast",
    "brightness": "Brightness", "sharpness": "Sharpness", "shear_x": "ShearX", "shear_y": "ShearY",
    "translate_x": "TranslateX", "translate_y": "TranslateY", "invert": "Invert",
}

_AUTO_AUGMENT = v2.AutoAugment()  # nearest interpolation, fill 0: the defaults OPS matches


def torchvision_op(op: str, image: torch.Tensor, value: float) -> torch.Tensor:
    """Apply `op` with `value` (OPS's units) to a uint8 CHW tensor the way torchvision's auto-augment does.

    torchvision's Solarize takes its threshold as a share of 255; OPS takes it on the 0-255 scale.
    """
    magnitude = value / 255.0 if op == "solarize" else value
    return _AUTO_AUGMENT._apply_image_or_video_transform(
        image, TORCHVISION_NAMES[op], magnitude, interpolation=_AUTO_AUGMENT.interpolation, fill=_AUTO_AUGMENT._fill)
