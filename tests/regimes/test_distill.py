"""regime=distill: the loss, the teacher on the student's batch, the unlabeled pool on the KD term alone.

The shapes teacher is very confident (logits up to 30); at T=4 its T^2-scaled term makes LeNet
diverge at lr 0.05 on this tiny set, so the training test distils at T=1.
"""

import torch
import torch.nn.functional as F

from cvrun.data.samples import HIDDEN
from cvrun.engine.losses import distillation_loss
from cvrun.models import create_model
from cvrun.regimes.teacher import Teacher
from tests.conftest import make_cfg, train_run
from tests.regimes.conftest import bare_regime

THREE = {"classes": ["circle", "ring", "square"]}


def test_the_loss_mixes_hard_labels_and_the_teacher_and_hidden_rows_only_distill(tmp_path):
    torch.manual_seed(0)
    student, teacher_model = create_model("lenet5", 3, 32), create_model("lenet5", 3, 32).eval()
    regime = bare_regime(make_cfg(regime={"name": "distill", "alpha": 0.7, "temperature": 3.0}), tmp_path)
    regime.teacher = Teacher(teacher_model, ([0.5] * 3, [0.5] * 3), ([0.5] * 3, [0.5] * 3))
    images = torch.randn(4, 3, 32, 32)
    labels = torch.tensor([0, HIDDEN, 2, HIDDEN])
    trained = torch.nn.ModuleDict({"model": student})
    loss, sums = regime.training_step(trained, {"labeled": (images, labels)}, None)
    logits = student(images)
    with torch.no_grad():
        teacher_logits = teacher_model(images)
    expected = (0.3 * F.cross_entropy(logits[[0, 2]], labels[[0, 2]])
                + 0.7 * distillation_loss(logits, teacher_logits, 3.0))
    assert torch.isclose(loss, expected, atol=1e-5) and sums["labeled"] == 2
    unlabeled_only, _ = regime.training_step(trained, {"labeled": (images, torch.full((4,), HIDDEN))}, None)
    assert torch.isfinite(unlabeled_only)


def test_distill_trains_a_student_from_a_teacher_and_the_pool_stays_unlabeled(source_run, tmp_path):
    teacher_before = (source_run / "checkpoints" / "best.pt").read_bytes()
    summary = train_run(tmp_path / "run", dataset={**THREE, "labeled_per_class": 30},
                        regime={"name": "distill", "teacher": str(source_run), "temperature": 1.0},
                        optim={"lr": 0.05},
                        trainer={"epochs": 4})
    assert summary["status"] == "completed" and summary["test_acc1"] >= 60, summary  # chance 33
    assert summary["labeled_samples"] == 81 and summary["unlabeled_samples"] == 600 - 90
    assert (source_run / "checkpoints" / "best.pt").read_bytes() == teacher_before
