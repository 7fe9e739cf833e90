"""Batch mixers (aug.mix): CutMix and MixUp on whole batches, with mixed soft targets.

torchvision.transforms.v2's CutMix and MixUp do the mixing; this module adds
the per-batch probability `aug.prob` and the registry that aug.mix names.
They run on the device after normalisation, draw from torch's global
generator (seeded by trainer.seed, saved in last.pt), and pair each image
with its neighbour in the shuffled batch.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

# aug.mix name -> torchvision.transforms.v2 class, imported when a run mixes: importing torchvision
# costs about 1.4 s of every start-up (torchvision.ops pulls in torch._dynamo).
MIXERS: dict[str, str] = {"cutmix": "CutMix", "mixup": "MixUp"}

BatchMixer = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class RandomlyApplied:
    """Apply `mixer` to a batch with probability `prob`; otherwise pass it through with its labels."""

    def __init__(self, mixer: Callable, prob: float):
        self.mixer, self.prob = mixer, prob

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.prob < 1.0 and float(torch.rand(())) >= self.prob:
            return images, labels
        return self.mixer(images, labels)


def build_batch_mixer(cfg: Any, num_classes: int) -> BatchMixer | None:
    """The mixer `aug.mix` names (null: none), at Beta(aug.alpha, aug.alpha), on a share aug.prob of batches."""
    if cfg.mix is None:
        return None
    from torchvision.transforms import v2

    mixer = getattr(v2, MIXERS[cfg.mix])(alpha=cfg.alpha, num_classes=num_classes)
    return RandomlyApplied(mixer, cfg.prob)
