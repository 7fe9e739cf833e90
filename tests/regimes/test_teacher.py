"""The frozen teacher, and the pseudo-labels it gives the unlabeled pool."""

import numpy as np
import pytest
import torch

from cvrun.data.samples import HIDDEN, Samples
from cvrun.errors import UserError
from cvrun.models import create_model
from cvrun.regimes.teacher import Teacher, select_pseudo_labels
from tests.conftest import make_cfg, train_run
from tests.regimes.conftest import bare_regime

STATS = ([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])


def test_the_teacher_stays_in_eval_mode_without_gradients():
    teacher = Teacher(create_model("resnet18", 3, 32), STATS, STATS)
    teacher.train()
    before = teacher.model.backbone.bn1.running_mean.clone()
    out = teacher(torch.randn(4, 3, 32, 32))
    assert not teacher.model.training and not out.requires_grad
    assert all(not p.requires_grad for p in teacher.parameters())
    assert torch.equal(teacher.model.backbone.bn1.running_mean, before)


def test_a_teacher_with_other_statistics_sees_the_same_images():
    model = create_model("lenet5", 3, 32).eval()
    raw = torch.rand(2, 3, 32, 32)
    student_view = (raw - 0.5) / 0.25
    teacher_view = (raw - 0.4) / 0.2
    teacher = Teacher(model, STATS, ([0.4] * 3, [0.2] * 3))
    assert torch.allclose(teacher(student_view), model(teacher_view), atol=1e-4)


def pool(true_labels):
    truth = np.asarray(true_labels)
    return Samples(labels=np.full(len(truth), HIDDEN), true_labels=truth, images=np.zeros((len(truth), 4, 4, 3), np.uint8))


def test_pseudo_labels_keep_the_confident_hard_or_soft_and_are_scored_on_hidden_labels():
    probabilities = torch.tensor([[0.9, 0.1, 0.0], [0.5, 0.4, 0.1], [0.1, 0.8, 0.1], [0.05, 0.05, 0.9]])
    names = ["a", "b", "c"]
    hard = select_pseudo_labels(probabilities, pool([0, 0, 2, 2]), names, threshold=0.7, soft=False)
    assert hard.kept.tolist() == [0, 2, 3]
    assert hard.targets.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert hard.stats["pseudo_labels_kept"] == 3 and hard.stats["pseudo_label_acc1"] == pytest.approx(66.67)
    assert hard.stats["pseudo_label_counts"] == {"a": 1, "b": 1, "c": 1}
    soft = select_pseudo_labels(probabilities, pool([0, 0, 2, 2]), names, threshold=0.7, soft=True)
    assert torch.equal(soft.targets, probabilities[[0, 2, 3]])
    unknown = select_pseudo_labels(probabilities, pool([HIDDEN] * 4), names, threshold=0.0, soft=False)
    assert unknown.stats["pseudo_labels_kept"] == 4 and unknown.stats["pseudo_label_acc1"] is None


def test_balanced_pseudo_labels_cap_every_class_at_the_rarest():
    probabilities = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.2, 0.8]])
    balanced = select_pseudo_labels(probabilities, pool([0, 0, 0, 1]), ["a", "b"], 0.5, False, balance=True)
    assert balanced.kept.tolist() == [0, 3]  # the most confident "a" and the only "b"


def test_the_pseudo_label_step_weighs_each_images_soft_cross_entropy(tmp_path):
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    regime = bare_regime(make_cfg(regime={"name": "pseudo_label"}), tmp_path)
    targets = {"label": torch.tensor([0, HIDDEN]), "target": torch.tensor([[1.0, 0.0], [0.3, 0.7]]),
               "weight": torch.tensor([1.0, 0.5])}
    model = torch.nn.ModuleDict({"model": torch.nn.Identity()})  # the "images" are the logits
    loss, sums = regime.training_step(model, {"labeled": (logits, targets)}, None)
    log_p = logits.log_softmax(1)
    expected = (-(log_p[0, 0]) * 1.0 + -(0.3 * log_p[1, 0] + 0.7 * log_p[1, 1]) * 0.5) / 2
    assert torch.isclose(loss, expected) and sums["correct"] == 2


def test_teacher_mistakes_are_user_errors(source_run, tmp_path):
    pool_split = {"labeled_per_class": 40}
    with pytest.raises(UserError, match="regime=pseudo_label needs regime.teacher"):
        train_run(tmp_path / "a", dataset=pool_split, regime={"name": "pseudo_label"})
    with pytest.raises(UserError, match=r"trained on classes \['circle', 'ring', 'square'\], but this dataset has "
                                        r"\['circle', 'ring', 'square', 'triangle', 'cross'\]"):
        train_run(tmp_path / "b", dataset=pool_split, regime={"name": "distill", "teacher": str(source_run)})
    with pytest.raises(UserError, match="regime.teacher=.* does not exist"):
        train_run(tmp_path / "c", dataset=pool_split, regime={"name": "distill", "teacher": str(tmp_path / "nope")})
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.yaml").write_text((source_run / "config.yaml").read_text())
    with pytest.raises(UserError, match="has no checkpoints/best.pt"):
        train_run(tmp_path / "d", dataset=pool_split, regime={"name": "distill", "teacher": str(tmp_path / "empty")})
    with pytest.raises(UserError, match="regime=pseudo_label needs unlabeled images"):
        train_run(tmp_path / "e", dataset={"classes": ["circle", "ring", "square"]},
                  regime={"name": "pseudo_label", "teacher": str(source_run)})
