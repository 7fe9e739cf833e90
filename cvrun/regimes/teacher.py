"""What the teacher-student regimes share: the frozen teacher and the labels it gives the unlabeled pool."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from cvrun.data.samples import Samples
from cvrun.data.splits import DataSplits
from cvrun.engine.evaluate import Normalize, predict
from cvrun.errors import UserError
from cvrun.models.pretrained import load_source_run

log = logging.getLogger("cvrun")


class Teacher(nn.Module):
    """A trained model in eval mode without gradients, fed batches normalised for the student.

    A teacher trained with another mean/std gets the same images re-expressed in its own
    normalisation (one affine map), so it always sees exactly what the student sees.
    """

    def __init__(self, model: nn.Module, student_stats: tuple[list, list], teacher_stats: tuple[list, list]):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        (s_mean, s_std), (t_mean, t_std) = student_stats, teacher_stats
        view = (1, -1, 1, 1)
        self.register_buffer("scale", (torch.tensor(s_std) / torch.tensor(t_std)).view(view))
        self.register_buffer("shift", ((torch.tensor(s_mean) - torch.tensor(t_mean)) / torch.tensor(t_std)).view(view))

    def train(self, mode: bool = True) -> "Teacher":
        return super().train(False)  # a teacher never leaves eval mode

    @torch.no_grad()
    def forward(self, student_images: torch.Tensor) -> torch.Tensor:
        return self.model(torch.addcmul(self.shift, student_images, self.scale))


@dataclass
class PseudoLabels:
    """Which pool images keep a teacher label, and the label as a distribution per kept image."""

    kept: np.ndarray  # indices into the unlabeled pool
    targets: torch.Tensor  # (kept, classes)
    stats: dict[str, Any]


def load_teacher(cfg: Any, data: DataSplits, device: torch.device) -> Teacher:
    """regime.teacher, checked against the dataset's classes and image size."""
    if cfg.regime.teacher is None:
        raise UserError(f"regime={cfg.regime.name} needs regime.teacher: the run folder or checkpoint of a "
                        f"trained teacher, e.g. regime.teacher=outputs/DATE/TIME_scratch_resnet18")
    source = load_source_run(cfg.regime.teacher, key="regime.teacher")
    if source.class_names != data.class_names:
        raise UserError(f"regime.teacher={cfg.regime.teacher} was trained on classes {source.class_names}, "
                        f"but this dataset has {data.class_names}; train the teacher on the same dataset.classes")
    if source.cfg.dataset.image_size != data.image_size:
        raise UserError(f"regime.teacher={cfg.regime.teacher} was trained on {source.cfg.dataset.image_size} px "
                        f"images, this run uses {data.image_size} px; set dataset.image_size="
                        f"{source.cfg.dataset.image_size}")
    log.info("teacher: %s (%s, %s classes)", cfg.regime.teacher, source.cfg.model.name, len(source.class_names))
    return Teacher(source.model, (list(cfg.dataset.mean), list(cfg.dataset.std)),
                   (list(source.cfg.dataset.mean), list(source.cfg.dataset.std))).to(device)


def require_pool(data: DataSplits, regime: str) -> Samples:
    if data.unlabeled is None or not len(data.unlabeled):
        raise UserError(f"regime={regime} needs unlabeled images: set dataset.labeled_per_class (the rest of the "
                        "training set becomes the pool) or dataset.unlabeled_root")
    return data.unlabeled


def teacher_probabilities(teacher: Teacher, loader: DataLoader, cfg: Any, device: torch.device,
                          dtype: torch.dtype | None) -> torch.Tensor:
    """The teacher's class distribution for every image of a plain loader (the pool, un-augmented), in order."""
    normalize = Normalize(list(cfg.dataset.mean), list(cfg.dataset.std), device)
    logits, _ = predict(teacher, loader, normalize, dtype)
    return logits.softmax(dim=1)


def select_pseudo_labels(probabilities: torch.Tensor, pool: Samples, class_names: list[str], threshold: float,
                         soft: bool, balance: bool = False) -> PseudoLabels:
    """Keep predictions with confidence >= threshold; hard (one-hot) or soft targets; scored where labels are known.

    `balance`: every class keeps at most as many images as the rarest kept class (the most confident ones).
    """
    confidence, predicted = probabilities.max(dim=1)
    keep = (confidence >= threshold).numpy()
    if balance and keep.any():
        per_class = [np.flatnonzero(keep & (predicted.numpy() == c)) for c in range(len(class_names))]
        cap = min(len(idx) for idx in per_class)
        keep[:] = False
        for idx in per_class:
            keep[idx[np.argsort(-confidence.numpy()[idx], kind="stable")[:cap]]] = True
    kept = np.flatnonzero(keep)
    chosen = predicted[kept]
    targets = probabilities[kept] if soft else torch.nn.functional.one_hot(chosen, len(class_names)).float()
    truth = pool.true_labels[kept]
    known = truth >= 0
    stats = {
        "pseudo_labels_kept": int(len(kept)),
        "pseudo_label_pool": int(len(pool)),
        "pseudo_label_acc1": (round(100.0 * float((chosen.numpy()[known] == truth[known]).mean()), 2)
                              if known.any() else None),
        "pseudo_label_counts": {name: int((chosen == c).sum()) for c, name in enumerate(class_names)},
    }
    return PseudoLabels(kept, targets, stats)
