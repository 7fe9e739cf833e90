"""Distillation losses against hand-computed values; class weights against scikit-learn's and torch's."""

import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cvrun.engine.losses import class_weights, distillation_loss, soft_kl
from cvrun.errors import UserError


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


def test_balanced_class_weights_are_n_over_classes_times_count_and_said_in_the_log(caplog):
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.array([0] * 6 + [1] * 2 + [2] * 4 + [-1] * 5)  # hidden labels (-1) are not counted
    with caplog.at_level(logging.INFO, logger="cvrun"):
        weights = class_weights("balanced", labels, ["a", "b", "c"])
    assert weights.tolist() == pytest.approx([12 / (3 * 6), 12 / (3 * 2), 12 / (3 * 4)])
    assert weights.tolist() == pytest.approx(compute_class_weight("balanced", classes=np.arange(3), y=labels[:12]))
    assert "class weights (balanced): a 0.667, b 2, c 1" in caplog.messages
    assert class_weights("none", labels, ["a", "b", "c"]) is None
    assert class_weights([1, 2.5, 3], labels, ["a", "b", "c"]).tolist() == [1.0, 2.5, 3.0]


def test_class_weights_of_the_wrong_length_or_for_a_class_without_images_are_refused():
    with pytest.raises(UserError, match=r"trainer.class_weights has 2 weights, but the data has 3 classes"):
        class_weights([1.0, 2.0], np.array([0, 1, 2]), ["a", "b", "c"])
    with pytest.raises(UserError, match=r"class_weights=balanced: class c has no labeled training image"):
        class_weights("balanced", np.array([0, 1, 1]), ["a", "b", "c"])


def test_a_regime_with_class_weights_trains_on_weighted_cross_entropy(tmp_path):
    """The standard loss is torch's weighted cross-entropy: sum of w_y x NLL over the batch, divided by sum of w_y."""
    from cvrun.engine.rundir import RunFolder
    from cvrun.regimes import REGIMES
    from tests.conftest import SHAPES, make_cfg

    cfg = make_cfg(dataset={**SHAPES, "train_size": 60, "test_size": 10}, model={"name": "lenet5"},
                   aug={"name": "none", "base": False},
                   trainer={"class_weights": [1.0, 2.0, 3.0, 4.0, 5.0], "device": "cpu", "progress": False})
    regime = REGIMES.get("scratch")(cfg, RunFolder(tmp_path / "run"))
    regime.prepare()
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    assert regime.class_weights.tolist() == weights.tolist()
    logits, labels = torch.randn(8, 5), torch.tensor([0, 1, 2, 3, 4, 4, 3, 0])
    by_hand = (weights[labels] * -logits.log_softmax(dim=1)[torch.arange(8), labels]).sum() / weights[labels].sum()
    assert torch.isclose(regime.loss(logits, labels), F.cross_entropy(logits, labels, weight=weights))
    assert torch.isclose(regime.loss(logits, labels), by_hand)
    assert not torch.isclose(regime.loss(logits, labels), F.cross_entropy(logits, labels))
