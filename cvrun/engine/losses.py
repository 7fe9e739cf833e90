"""Losses that regimes hand the trainer beside plain cross-entropy."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cvrun.errors import UserError

log = logging.getLogger("cvrun")


def soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch.

    Its gradient is that of the cross-entropy between the two softened distributions, the
    old-task term of Learning without Forgetting (Li & Hoiem 2016, who use no T^2 factor).
    """
    student = F.log_softmax(student_logits / temperature, dim=1)
    teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean")


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 x soft_kl: Hinton et al. 2015's distillation term.

    The T^2 factor keeps the gradient's size independent of T, so the weight of this term
    means the same at every temperature.
    """
    return soft_kl(student_logits, teacher_logits, temperature) * temperature ** 2


def class_weights(setting: Any, labels: np.ndarray, class_names: list[str]) -> torch.Tensor | None:
    """trainer.class_weights as cross-entropy's `weight`: None for none; balanced: n_images / (n_classes x
    count_c) over the labeled training images (`labels`, hidden ones < 0 left out), scikit-learn's
    compute_class_weight; a list: one weight per class, in the classes' order. Said in train.log."""
    if setting in (None, "none"):
        return None
    if setting == "balanced":
        from sklearn.utils.class_weight import compute_class_weight

        labels = np.asarray(labels)
        labels = labels[labels >= 0]
        counts = np.bincount(labels, minlength=len(class_names))
        if not counts.all():
            missing = ", ".join(name for name, count in zip(class_names, counts) if count == 0)
            raise UserError(f"trainer.class_weights=balanced: class {missing} has no labeled training image, so its "
                            "weight would be infinite; give the weights as a list, or keep that class's images")
        weights = compute_class_weight("balanced", classes=np.arange(len(class_names)), y=labels)
    else:
        weights = np.asarray(list(setting), dtype=np.float64)
        if len(weights) != len(class_names):
            raise UserError(f"trainer.class_weights has {len(weights)} weights, but the data has {len(class_names)} "
                            "classes: give one weight per class, in the order of the classes, or use balanced")
    log.info("class weights (%s): %s", "balanced" if setting == "balanced" else "given",
             ", ".join(f"{name} {weight:.3g}" for name, weight in zip(class_names, weights)))
    return torch.tensor(weights, dtype=torch.float32)
