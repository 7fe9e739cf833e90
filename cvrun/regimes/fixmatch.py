"""`regime=fixmatch` (Sohn et al. 2020), with FlexMatch's thresholds (Zhang et al. 2021) as an option.

Each step takes a labeled batch (the run's aug, the weak one: flip and pad-crop) and regime.mu times as
many unlabeled images, each in a weak and a strong view (regime.strong_aug: RandAugment plus cutout).
Where the weak view's prediction reaches the threshold it is the hard pseudo-label of the strong view:
loss = CE(labeled) + regime.lambda_u x mean over the unlabeled batch of mask x CE(strong, pseudo-label).
The three batches go through the model in one pass, as in the paper. Evaluation uses the EMA weights
(trainer.ema_decay, 0.999 in the presets).

threshold_mode=flex: class c's threshold is threshold x M(beta_c), M(x) = x / (2 - x), with beta_c the
number of pool images whose last confident prediction was c over the largest count of any class or of
the images not yet confidently predicted (the warm-up), so classes learned late start at low thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvrun.config import option_values, typed_option
from cvrun.engine import distributed
from cvrun.errors import UserError, require
from cvrun.regimes.base import REGIMES, accuracy_sums
from cvrun.regimes.consistency import ConsistencyConfig, ConsistencyRegime, pseudo_label_sums

THRESHOLD_MODES = ("fixed", "flex")


@dataclass
class FixMatchConfig(ConsistencyConfig):
    name: str = "fixmatch"
    strong_aug: str = "randaug_cutout"  # the aug option of the strong view
    threshold_mode: str = "fixed"  # fixed (FixMatch) or flex (FlexMatch's class-wise curriculum)

    def check(self) -> None:
        super().check()
        require(self.threshold_mode in THRESHOLD_MODES,
                f"regime.threshold_mode must be one of {', '.join(THRESHOLD_MODES)}, got {self.threshold_mode}")


class FlexThresholds(nn.Module):
    """FlexMatch's record: each pool image's last confident prediction (-1: none yet), checkpointed with the
    model; every process applies every process's updates, so they keep one record."""

    def __init__(self, pool_size: int, classes: int):
        super().__init__()
        self.classes = classes
        self.register_buffer("selected", torch.full((pool_size,), -1, dtype=torch.long))

    def thresholds(self, threshold: float) -> torch.Tensor:
        """Each class's threshold: threshold x M(beta_c) (with the warm-up's denominator)."""
        counts = torch.bincount(self.selected + 1, minlength=self.classes + 1).float()
        beta = counts[1:] / counts.max().clamp(min=1)
        return threshold * beta / (2 - beta)

    def update(self, indices: torch.Tensor, confidence: torch.Tensor, pseudo: torch.Tensor, threshold: float) -> None:
        indices, confidence, pseudo = (distributed.gather_from_ranks(t) for t in (indices, confidence, pseudo))
        chosen = confidence >= threshold
        self.selected[indices[chosen]] = pseudo[chosen]


@REGIMES.register("fixmatch")
class FixMatch(ConsistencyRegime):
    config = FixMatchConfig

    def prepare(self) -> None:
        super().prepare()
        self.flex = (FlexThresholds(len(self.pool), self.data.num_classes)
                     if self.cfg.regime.threshold_mode == "flex" else None)

    def second_view(self) -> Any:
        name = self.cfg.regime.strong_aug
        try:
            option = typed_option("aug", option_values("aug", name), "regime.strong_aug")
        except UserError as err:
            raise UserError(f"regime.strong_aug: {err}") from None
        if option.mix:
            raise UserError(f"regime.strong_aug={name} mixes images (its mix is {option.mix}), but a strong view is "
                            "one image's: name an option without mixing, e.g. regime.strong_aug=randaug_cutout")
        return option

    @property
    def trained(self) -> dict[str, nn.Module]:
        return {"model": self.model, **({"flex": self.flex} if self.flex is not None else {})}

    def training_step(self, trained: nn.ModuleDict, batches: dict[str, Any],
                      ema: nn.Module | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        r = self.cfg.regime
        labeled_images, labels = batches["labeled"]
        (weak, strong), pool = batches["unlabeled"]
        logits = trained["model"](self.normalize(torch.cat([labeled_images, weak, strong]))).float()
        labeled_logits, weak_logits, strong_logits = logits.split([len(labels), len(weak), len(strong)])
        confidence, pseudo = weak_logits.detach().softmax(dim=1).max(dim=1)
        threshold = r.threshold if "flex" not in trained else trained["flex"].thresholds(r.threshold)[pseudo]
        mask = confidence >= threshold
        unlabeled_loss = (F.cross_entropy(strong_logits, pseudo, reduction="none") * mask).mean()
        if "flex" in trained:
            trained["flex"].update(pool["index"], confidence, pseudo, r.threshold)
        loss = self.loss(labeled_logits, labels) + r.lambda_u * unlabeled_loss
        return loss, {**accuracy_sums(labeled_logits, labels),
                      **pseudo_label_sums(mask, pseudo, pool["true_label"], used=mask)}
