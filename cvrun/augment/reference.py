"""torchvision.transforms.v2's own result for each op of OPS that names a torchvision op: what tests and
benchmarks compare against.

It calls the method torchvision's RandAugment/AutoAugment use to apply one op
(`_apply_image_or_video_transform`), so the comparison follows torchvision's
code rather than a copy of it. Which torchvision op, and in which unit, is
registered with each op (ops.register_op).
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from cvrun.augment.ops import OPS

_AUTO_AUGMENT = v2.AutoAugment()  # nearest interpolation, fill 0: the defaults OPS matches


def torchvision_op(op: str, image: torch.Tensor, value: float) -> torch.Tensor:
    """Apply `op` with `value` (OPS's units) to a uint8 CHW tensor the way torchvision's auto-augment does.

    The value is divided by the op's torchvision_unit first (solarize: OPS takes the threshold on the 0-255
    scale, torchvision as a share of 255).
    """
    registered = OPS[op]
    return _AUTO_AUGMENT._apply_image_or_video_transform(
        image, registered.torchvision, value / registered.torchvision_unit,
        interpolation=_AUTO_AUGMENT.interpolation, fill=_AUTO_AUGMENT._fill)
