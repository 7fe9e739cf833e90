"""Augmentation: per-image ops on uint8 HWC arrays, the options built from them, batch mixers.

    from cvrun.augment import OPS
    out = OPS["rotate"](img, 15.0)   # img: uint8 HxWxC; same shape and dtype back

A per-image transform is a function (image, rng) -> image that
`build_train_transform` composes from `aug`; `build_batch_mixer` gives the
batch-level CutMix/MixUp named by `aug.mix`. Each aug option is registered in
POLICIES with its own config schema (policies.py says how to add one).
"""

from cvrun.augment.ops import OPS
from cvrun.augment.policies import POLICIES, AugOption, build_train_transform, register_policy

__all__ = ["OPS", "POLICIES", "AugOption", "build_train_transform", "register_policy"]
