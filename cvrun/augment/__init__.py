"""Augmentation: per-image ops on uint8 HWC arrays and the policies built from them.

A policy is a function (image, rng) -> image; `build_train_transform` picks
one by `aug.name` from the POLICIES registry.
"""

from cvrun.augment.policies import POLICIES, build_train_transform

__all__ = ["POLICIES", "build_train_transform"]
