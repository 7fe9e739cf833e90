"""`regime=distill` (Hinton et al. 2015): the student matches the teacher's softened outputs.

loss = (1 - alpha) x CE(student, label) + alpha x T^2 x KL(softmax(teacher / T) || softmax(student / T)).
The teacher sees exactly the augmented batch the student sees. Images of the unlabeled pool (with
regime.use_unlabeled) carry no label and train on the distillation term alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from cvrun.config import path_field
from cvrun.data.samples import HIDDEN, Samples
from cvrun.data.splits import build_splits
from cvrun.engine.losses import distillation_loss
from cvrun.errors import require
from cvrun.regimes.base import REGIMES, Regime, RegimeConfig, accuracy_sums
from cvrun.regimes.teacher import check_teacher, load_teacher

log = logging.getLogger("cvrun")


@dataclass
class DistillConfig(RegimeConfig):
    name: str = "distill"
    teacher: Optional[str] = path_field()  # the teacher's run folder or checkpoint
    alpha: float = 0.9  # weight of the distillation term
    temperature: float = 4.0
    use_unlabeled: bool = True  # pool images (dataset.labeled_per_class, unlabeled_root) train on the KD term alone

    def check(self) -> None:
        require(0 <= self.alpha <= 1, f"regime.alpha (weight of the distillation term) must be in [0, 1], got {self.alpha}")
        require(self.temperature > 0, f"regime.temperature must be > 0, got {self.temperature}")


@REGIMES.register("distill")
class Distill(Regime):
    config = DistillConfig
    mixes = False  # the teacher's outputs belong to single images
    no_class_weights = "its loss mixes the labels' term with the teacher's"

    @classmethod
    def check_before_run(cls, cfg: Any) -> None:
        super().check_before_run(cfg)
        check_teacher(cfg)

    def prepare(self) -> None:
        data = self.data = build_splits(self.cfg.dataset)
        self.model = self.build_model()
        self.teacher = load_teacher(self.cfg, data, self.device)
        train = data.train
        if self.cfg.regime.use_unlabeled and data.unlabeled is not None and len(data.unlabeled):
            train = Samples.concat(data.train, data.unlabeled, data.image_size)
            log.info("distill: %d labeled + %d unlabeled images (distillation term alone)",
                     len(data.train), len(data.unlabeled))
        self.setup_loaders(replace(data, train=train))
        self.summary_extra.update(labeled_samples=len(data.train), unlabeled_samples=len(train) - len(data.train))

    def training_step(self, trained: nn.ModuleDict, batches: dict[str, Any],
                      ema: nn.Module | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, labels = batches["labeled"]
        images = self.normalize(images)
        logits = trained["model"](images).float()
        teacher_logits = self.teacher(images).float()
        r = self.cfg.regime
        # Mean over the labeled rows, with no host sync to count them (none labeled: the term is 0).
        known = labels != HIDDEN
        hard = F.cross_entropy(logits, labels, ignore_index=HIDDEN, reduction="sum") / known.sum().clamp(min=1)
        loss = (1 - r.alpha) * hard + r.alpha * distillation_loss(logits, teacher_logits, r.temperature)
        return loss, accuracy_sums(logits, labels)
