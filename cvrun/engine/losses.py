"""Losses that regimes hand the trainer beside plain cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
