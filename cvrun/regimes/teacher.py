"""What the teacher-student regimes share: the frozen teacher and the labels it gives the unlabeled pool."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from cvrun.config import load_run_config
from cvrun.data.samples import Samples
from cvrun.data.sources import known_class_names
from cvrun.data.splits import DataSplits, planned_splits
from cvrun.engine.evaluate import Normalize, predict
from cvrun.errors import UserError
from cvrun.models.pretrained import load_source_run, source_files

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


def require_teacher(cfg: Any) -> str:
    if cfg.regime.teacher is None:
        raise UserError(f"regime={cfg.regime.name} needs regime.teacher: the run folder or checkpoint of a "
                        f"trained teacher, e.g. regime.teacher=outputs/DATE/TIME_scratch_resnet18")
    return cfg.regime.teacher


def refuse_mismatch(reference: str, teacher_classes: list[str] | None, teacher_size: int,
                    classes: list[str] | None, image_size: int) -> None:
    """A teacher trained on other classes or another image size (None: not known yet, not compared)."""
    if teacher_classes is not None and classes is not None and teacher_classes != classes:
        raise UserError(f"regime.teacher={reference} was trained on classes {teacher_classes}, "
                        f"but this dataset has {classes}; train the teacher on the same dataset.classes")
    if teacher_size != image_size:
        raise UserError(f"regime.teacher={reference} was trained on {teacher_size} px images, this run uses "
                        f"{image_size} px; set dataset.image_size={teacher_size}")


def check_teacher(cfg: Any) -> None:
    """regime.teacher before the run folder is made, from its config.yaml and summary.json: given, a run that
    can give weights (not failed, with a best checkpoint), trained on this run's classes (where a listing
    tells them) and image size. A checkpoint file's config is inside it: checked when it is loaded."""
    reference = require_teacher(cfg)
    files = source_files(reference, "regime.teacher")
    if files.config is not None:
        teacher_cfg = load_run_config(files.config)
        refuse_mismatch(reference, files.summary.get("class_names"), teacher_cfg.dataset.image_size,
                        known_class_names(cfg.dataset), cfg.dataset.image_size)


def load_teacher(cfg: Any, data: DataSplits, device: torch.device) -> Teacher:
    """regime.teacher, checked against the dataset's classes and image size."""
    reference = require_teacher(cfg)
    source = load_source_run(reference, key="regime.teacher")
    refuse_mismatch(reference, source.class_names, source.cfg.dataset.image_size, data.class_names, data.image_size)
    log.info("teacher: %s (%s, %s classes)", reference, source.cfg.model.name, len(source.class_names))
    return Teacher(source.model, (list(cfg.dataset.mean), list(cfg.dataset.std)),
                   (list(source.cfg.dataset.mean), list(source.cfg.dataset.std))).to(device)


def check_pool_before_run(cfg: Any) -> None:
    """The unlabeled pool of a regime that needs one, checked from the file listing before the run folder exists
    (where the data is an image-folder tree: planned_splits)."""
    data = planned_splits(cfg.dataset)
    if data is not None:
        require_pool(data, cfg.regime.name)


def require_pool(data: DataSplits, regime: str) -> Samples:
    """The unlabeled pool of a regime that needs one; an empty one is a UserError saying which setting left it so."""
    if data.unlabeled is None:
        raise UserError(f"regime={regime} needs unlabeled images: set dataset.labeled_per_class (the rest of the "
                        "training set becomes the pool) or dataset.unlabeled_root")
    if not len(data.unlabeled):  # dataset.labeled_per_class is set (it made this empty pool)
        # With no pool left every class is labeled whole: its size is its train + validation count.
        sizes = {name: count + data.record.get("val", {}).get("per_class", {}).get(name, 0)
                 for name, count in data.record["train"]["per_class"].items()}
        largest = max(sizes, key=sizes.get)
        raise UserError(f"regime={regime} needs unlabeled images, but dataset.labeled_per_class keeps every training "
                        f"image labeled (the largest class, {largest}, has {sizes[largest]}); set "
                        f"dataset.labeled_per_class below {sizes[largest]}, or add dataset.unlabeled_root")
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
