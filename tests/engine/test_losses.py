"""Distillation losses against hand-computed values."""

import math

import torch

from cvrun.engine.losses import distillation_loss, soft_kl


def test_soft_kl_and_distillation_match_a_hand_computed_value():
    student = torch.tensor([[1.0, 0.0]])
    teacher = torch.tensor([[0.0, 2.0]])
    t = 2.0
    p = [math.exp(0) / (math.exp(0) + math.exp(1)), math.exp(1) / (math.exp(0) + math.exp(1))]  # teacher / T
    q = [math.exp(0.5) / (math.exp(0.5) + 1), 1 / (math.exp(0.5) + 1)]  # student / T
    kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    assert math.isclose(soft_kl(student, teacher, t).item(), kl, rel_tol=1e-5)
    assert math.isclose(distillation_loss(student, teacher, t).item(), t * t * kl, rel_tol=1e-5)


def test_distillation_is_zero_at_the_teacher_and_averaged_over_the_batch():
    logits = torch.randn(4, 5)
    assert distillation_loss(logits, logits, 4.0).abs().item() < 1e-6
    one = distillation_loss(logits[:1], logits[1:2], 3.0)
    twice = distillation_loss(logits[:1].repeat(2, 1), logits[1:2].repeat(2, 1), 3.0)
    assert torch.isclose(one, twice)
