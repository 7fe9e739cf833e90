"""regime=fixmatch: the paper's loss, FlexMatch's thresholds, and learning beyond the labels on CIFAR-10."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cvrun.models import create_model
from cvrun.regimes.fixmatch import FlexThresholds
from tests.conftest import make_cfg, needs_cifar10
from tests.regimes.conftest import bare_regime, small_cifar10_run


def test_the_loss_is_labeled_ce_plus_masked_ce_of_the_strong_view_on_the_weak_views_pseudo_labels(tmp_path):
    torch.manual_seed(0)
    model = create_model("lenet5", 3, 32)  # no batch norm: one pass over the three batches is three passes
    labeled, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    weak, strong = torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        confidence, pseudo = model(weak).softmax(dim=1).max(dim=1)
    threshold = confidence.median().item()
    mask = confidence >= threshold
    assert 0 < mask.sum() < 8
    truth = torch.where(torch.arange(8) % 2 == 0, pseudo, (pseudo + 1) % 3)  # half the pseudo-labels wrong
    regime = bare_regime(make_cfg(regime={"name": "fixmatch", "lambda_u": 2.0, "threshold": threshold}), tmp_path)
    batches = {"labeled": (labeled, labels), "unlabeled": ((weak, strong), {"true_label": truth, "index": torch.arange(8)})}
    loss, sums = regime.training_step(nn.ModuleDict({"model": model}), batches, None)
    expected = (F.cross_entropy(model(labeled), labels)
                + 2.0 * (F.cross_entropy(model(strong), pseudo, reduction="none") * mask).sum() / 8)
    assert torch.isclose(loss, expected, atol=1e-6)
    assert sums["confident"] == mask.sum() and sums["unlabeled"] == 8
    assert sums["pseudo_known"] == mask.sum() and sums["pseudo_correct"] == (mask & (pseudo == truth)).sum()
    nothing_confident = bare_regime(make_cfg(regime={"name": "fixmatch", "threshold": 1.0}), tmp_path)
    labeled_only, _ = nothing_confident.training_step(nn.ModuleDict({"model": model}), batches, None)
    assert torch.isclose(labeled_only, F.cross_entropy(model(labeled), labels), atol=1e-6)


def test_flex_thresholds_follow_each_class_learning_effect():
    flex = FlexThresholds(pool_size=10, classes=3)
    assert torch.equal(flex.thresholds(0.95), torch.zeros(3))  # nothing learned yet: every prediction passes
    flex.update(torch.arange(6), torch.tensor([.99, .99, .99, .99, .50, .99]), torch.tensor([0, 0, 0, 1, 2, 2]), 0.95)
    beta = torch.tensor([3, 1, 1]) / 5  # five pool images still unlearned: the warm-up's denominator
    assert torch.allclose(flex.thresholds(0.95), 0.95 * beta / (2 - beta))
    flex.update(torch.arange(10), torch.ones(10), torch.tensor([0] * 6 + [1] * 2 + [2] * 2), 0.95)
    beta = torch.tensor([6, 2, 2]) / 6  # all learned: the largest class is the denominator
    assert torch.allclose(flex.thresholds(0.95), 0.95 * beta / (2 - beta))
    flex.update(torch.tensor([0]), torch.tensor([0.9]), torch.tensor([2]), 0.95)
    assert flex.selected[0] == 0  # an unconfident prediction leaves the last confident one
    assert "selected" in flex.state_dict()  # checkpointed with the model: a resume keeps the curriculum


@needs_cifar10
@pytest.mark.parametrize("threshold_mode", ["fixed", "flex"])
def test_fixmatch_learns_beyond_the_labels_on_cifar10(labels_alone, tmp_path, threshold_mode):
    """Deterministic: fixed 78.1, flex 78.3, labels alone 70.7."""
    summary = small_cifar10_run(tmp_path / "run", regime={"name": "fixmatch", "mu": 3, "threshold": 0.7,
                                                          "threshold_mode": threshold_mode})
    assert summary["status"] == "completed" and summary["unlabeled_samples"] == 14925
    assert summary["test_acc1"] >= labels_alone["test_acc1"] + 3, (summary["test_acc1"], labels_alone["test_acc1"])
    assert summary["mask_rate"] > 30 and summary["pseudo_label_acc1"] > 60  # chance 33
