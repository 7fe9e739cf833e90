"""`regime=pseudo_label` (Lee 2013, offline): the teacher labels the unlabeled pool once; the student
trains on the labeled images plus the confidently pseudo-labeled ones."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from cvrun.config import path_field
from cvrun.data.samples import Samples
from cvrun.data.splits import build_splits
from cvrun.errors import UserError, require
from cvrun.regimes.base import REGIMES, Regime, RegimeConfig, accuracy_sums
from cvrun.regimes.teacher import (PseudoLabels, check_pool_before_run, check_teacher, load_teacher, require_pool,
                                   select_pseudo_labels, teacher_probabilities)

log = logging.getLogger("cvrun")


@dataclass
class PseudoLabelConfig(RegimeConfig):
    name: str = "pseudo_label"
    teacher: Optional[str] = path_field()  # the teacher's run folder or checkpoint
    threshold: float = 0.95  # keep pool predictions with at least this confidence
    soft: bool = False  # true: the teacher's whole distribution instead of its top class
    unlabeled_weight: float = 1.0  # loss weight of a pseudo-labeled image
    balance: bool = False  # every class keeps at most as many pseudo-labels as the rarest class has

    def check(self) -> None:
        require(0 <= self.threshold <= 1, f"regime.threshold (confidence cut) must be in [0, 1], got {self.threshold}")
        require(self.unlabeled_weight >= 0, f"regime.unlabeled_weight must be >= 0, got {self.unlabeled_weight}")


@REGIMES.register("pseudo_label")
class PseudoLabel(Regime):
    config = PseudoLabelConfig
    mixes = False  # pseudo-labels belong to single images
    no_class_weights = "its loss weighs each image by its kind (labeled or pseudo-labeled), not its class"
    result_columns = ("pseudo_label_acc1", "pseudo_labels_kept")

    @classmethod
    def check_before_run(cls, cfg: Any) -> None:
        super().check_before_run(cfg)
        check_teacher(cfg)
        check_pool_before_run(cfg)

    def prepare(self) -> None:
        """Labeled images + the pool images the teacher labels confidently, the latter weighted by unlabeled_weight;
        the pool's own labels stay hidden (scoring the pseudo-labels only)."""
        r = self.cfg.regime
        data = self.data = build_splits(self.cfg.dataset)
        self.model = self.build_model()
        teacher = load_teacher(self.cfg, data, self.device)
        pool = require_pool(data, r.name)
        probabilities = teacher_probabilities(teacher, self.plain_loader(pool), self.cfg, self.device, self.dtype)
        pseudo = select_pseudo_labels(probabilities, pool, data.class_names, r.threshold, r.soft, r.balance)
        refuse_no_pseudo_labels(pseudo, probabilities, r)
        log.info("pseudo-labels: kept %d of %d pool images (confidence >= %.2f), %s%% correct where known",
                 pseudo.stats["pseudo_labels_kept"], len(pool), r.threshold, pseudo.stats["pseudo_label_acc1"])
        labeled_rows = F.one_hot(torch.as_tensor(data.train.labels), data.num_classes).float()
        extras = {"target": torch.cat([labeled_rows, pseudo.targets]),
                  "weight": torch.cat([torch.ones(len(labeled_rows)),
                                       torch.full((len(pseudo.kept),), float(r.unlabeled_weight))])}
        self.setup_loaders(replace(data, train=Samples.concat(data.train, pool.take(pseudo.kept), data.image_size)),
                           extras)
        self.summary_extra.update(pseudo.stats, labeled_samples=len(data.train))

    def training_step(self, trained: nn.ModuleDict, batches: dict[str, Any],
                      ema: nn.Module | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per image: cross-entropy against its class distribution (label or pseudo-label), times its weight."""
        images, targets = batches["labeled"]
        logits = trained["model"](self.normalize(images))
        per_image = -(targets["target"] * logits.float().log_softmax(dim=1)).sum(dim=1)
        return (per_image * targets["weight"]).mean(), accuracy_sums(logits, targets["target"].argmax(dim=1))


def refuse_no_pseudo_labels(pseudo: PseudoLabels, probabilities: torch.Tensor, r: Any) -> None:
    """A run that would train on the labeled images alone, recorded as pseudo-labelling, fails instead,
    naming the cause: the threshold above every confidence the teacher reaches, or balance with a class the
    teacher never predicts confidently."""
    if pseudo.stats["pseudo_labels_kept"]:
        return
    confidence, predicted = probabilities.max(dim=1)
    highest = float(confidence.max())
    if highest >= r.threshold:  # confident labels exist, but balance kept as many per class as the rarest has
        names = list(pseudo.stats["pseudo_label_counts"])
        confident = torch.bincount(predicted[confidence >= r.threshold], minlength=len(names)).tolist()
        missing = [name for name, count in zip(names, confident) if count == 0]
        raise UserError(f"regime.balance=true keeps as many pseudo-labels per class as the rarest class has, and the "
                        f"teacher labels no pool image {', '.join(missing)} with confidence >= regime.threshold="
                        f"{r.threshold}: set regime.balance=false, lower regime.threshold, or use a better teacher")
    raise UserError(f"regime.threshold={r.threshold} keeps none of the {pseudo.stats['pseudo_label_pool']} pool "
                    f"images: the teacher's highest confidence on them is {highest:.3f}; lower regime.threshold "
                    "below it, or use a better-trained teacher (regime.teacher)")
