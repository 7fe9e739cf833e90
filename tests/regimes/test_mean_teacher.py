"""regime=mean_teacher: the paper's consistency loss and ramp-up, and learning beyond the labels on CIFAR-10."""

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from cvrun.models import create_model
from cvrun.regimes.consistency import ramp_up
from tests.conftest import make_cfg, needs_cifar10
from tests.regimes.conftest import bare_regime, small_cifar10_run


def test_the_ramp_up_is_the_papers_sigmoid():
    assert ramp_up(0.0) == math.exp(-5) and ramp_up(0.5) == math.exp(-1.25) and ramp_up(1.0) == 1.0
    assert ramp_up(3.0) == 1.0 and ramp_up(-1.0) == math.exp(-5)
    steps = [ramp_up(t / 10) for t in range(11)]
    assert steps == sorted(steps)


def test_the_loss_is_labeled_ce_plus_the_ramped_squared_difference_to_the_teachers_softmax(tmp_path):
    torch.manual_seed(0)
    student, teacher = create_model("lenet5", 3, 32), create_model("lenet5", 3, 32)
    cfg = make_cfg(regime={"name": "mean_teacher", "lambda_u": 10.0, "rampup": 0.5, "threshold": 0.3},
                   trainer={"ema_decay": 0.99})
    regime = bare_regime(cfg, tmp_path)
    regime.total_steps, regime.steps_done = 100, 25  # half-way through the ramp-up (its first 50 steps)
    labeled, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    student_view, teacher_view = torch.randn(6, 3, 32, 32), torch.randn(6, 3, 32, 32)
    truth = torch.tensor([0, 1, 2, 0, 1, 2])
    batches = {"labeled": (labeled, labels),
               "unlabeled": ((student_view, teacher_view), {"true_label": truth, "index": torch.arange(6)})}
    loss, sums = regime.training_step(nn.ModuleDict({"model": student}), batches, SimpleNamespace(module=teacher))
    teacher_probs = teacher(teacher_view).softmax(dim=1)
    expected = (F.cross_entropy(student(labeled), labels)
                + 10.0 * ramp_up(0.5) * F.mse_loss(student(student_view).softmax(dim=1), teacher_probs))
    assert torch.isclose(loss, expected, atol=1e-6) and regime.steps_done == 26
    confidence, pseudo = teacher_probs.max(dim=1)
    assert sums["confident"] == (confidence >= 0.3).sum() and sums["pseudo_known"] == 6  # every teacher label scored
    assert sums["pseudo_correct"] == (pseudo == truth).sum()
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())  # the teacher moves only as the student's average


@needs_cifar10
def test_mean_teacher_learns_beyond_the_labels_on_cifar10(labels_alone, tmp_path):
    """At the default lambda_u (10): at USB's 50 so few labels (75) lose to the pull towards flat predictions in
    600 steps."""
    summary = small_cifar10_run(tmp_path / "run", regime={"name": "mean_teacher", "mu": 2})
    assert summary["status"] == "completed" and summary["unlabeled_samples"] == 14925
    assert summary["test_acc1"] >= labels_alone["test_acc1"] + 1, (summary["test_acc1"], labels_alone["test_acc1"])
    assert summary["pseudo_label_acc1"] > 60  # the teacher's predictions on the pool; chance 33


@needs_cifar10
def test_a_run_shorter_than_the_ema_warm_up_tests_the_same_at_0_999_as_at_0_99(labels_alone, tmp_path):
    """600 updates: both decays are still in the warm-up, so the evaluated weights are the same (without it,
    0.999 kept 55% of the random initial weights and tested near chance)."""
    summary = small_cifar10_run(tmp_path / "run", trainer={"ema_decay": 0.999})
    assert summary["test_acc1"] == labels_alone["test_acc1"] > 50


def test_mean_teacher_at_its_defaults_uses_a_teacher_of_0_999_and_records_it(tmp_path):
    from omegaconf import OmegaConf

    from tests.conftest import train_run

    summary = train_run(tmp_path / "run", regime={"name": "mean_teacher"},
                        dataset={"train_size": 100, "test_size": 20, "labeled_per_class": 6}, trainer={"epochs": 1})
    assert summary["status"] == "completed"
    assert OmegaConf.load(tmp_path / "run" / "config.yaml").trainer.ema_decay == 0.999
