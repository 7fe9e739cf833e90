"""Batch preparation on the device, and evaluation without augmentation work."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from cvrun import parallel
from cvrun.engine import distributed
from cvrun.engine.calibration import ConfidenceBins
from cvrun.engine.runtime import autocast


class Normalize:
    """uint8 NCHW batch -> normalised float batch on the device.

    Done here rather than in the workers: one fused multiply-add on the
    device instead of a float conversion per image on the CPU, and a quarter
    of the bytes to move.
    """

    def __init__(self, mean: list[float], std: list[float], device: torch.device, channels_last: bool = False):
        self.mean, self.std = list(mean), list(std)
        std_t = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255
        self.scale = 1.0 / std_t
        self.shift = -torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255 / std_t
        self.device = device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True).float()
        return torch.addcmul(self.shift, images, self.scale).contiguous(memory_format=self.memory_format)


class ToDevice:
    """Inputs that need no normalisation (cached features): moved to the device as they are."""

    def __init__(self, device: torch.device):
        self.device = device

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.to(self.device, non_blocking=True)


@torch.inference_mode()
def predict(module: nn.Module, loader: DataLoader, prepare: Normalize | ToDevice,
            dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`module`'s outputs (float32, on the CPU) for every batch of `loader`, and the loader's targets."""
    was_training = module.training
    module.eval()
    outputs, targets = [], []
    for inputs, batch_targets in loader:
        with autocast(prepare.device, dtype):
            outputs.append(module(prepare(inputs)).float().cpu())
        targets.append(batch_targets)
    module.train(was_training)
    return torch.cat(outputs), torch.cat(targets)


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """How many rows have their label among the k highest logits (stays on the device)."""
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return (top == labels[:, None]).any(dim=1).sum()


# Seconds an evaluation runs before its progress bar shows: a large split gets one, a small one stays quiet.
PROGRESS_DELAY = 2.0


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DataLoader, normalize: Normalize | ToDevice,
             dtype: torch.dtype | None = None, progress: str | None = None,
             temperature: float | None = None) -> dict[str, float]:
    """Loss, top-1 and top-5 accuracy (percent) and the number of images, each counted once.

    progress: the label of a progress bar (trainer.progress), shown once the evaluation has taken PROGRESS_DELAY s.
    temperature: a calibration's (cvrun calibrate); adds the ECE (percent) of the model's probabilities and the
    loss and ECE of the probabilities with logits / temperature (`ece`, `calibrated_loss`, `calibrated_ece`).
    """
    was_training = model.training
    model.eval()
    device = normalize.device
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct1 = torch.zeros((), device=device, dtype=torch.long)
    correct5 = torch.zeros((), device=device, dtype=torch.long)
    seen = torch.zeros((), device=device, dtype=torch.long)
    confusion: torch.Tensor | None = None
    calibrated = None if temperature is None else CalibratedSums(temperature, device)
    batches = tqdm(loader, desc=progress, leave=False, delay=PROGRESS_DELAY, mininterval=1.0, dynamic_ncols=True,
                   disable=progress is None or not parallel.is_main())
    for images, labels in batches:
        labels = labels.to(device, non_blocking=True)
        with autocast(device, dtype):
            logits = model(normalize(images)).float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum")
        correct1 += topk_correct(logits, labels, 1)
        correct5 += topk_correct(logits, labels, 5)
        seen += labels.shape[0]
        counts = confusion_counts(logits, labels)
        confusion = counts if confusion is None else confusion + counts
        if calibrated is not None:
            calibrated.add(logits, labels)
    model.train(was_training)
    if confusion is None:  # no images on this process (an evaluation shard can be empty)
        confusion = torch.zeros(0, 0, device=device, dtype=torch.long)
    # Under torchrun each process scored its own share; the sums make the whole set, each image once.
    distributed.sum_over_ranks(loss_sum, correct1, correct5, seen)
    confusion = summed_confusion(confusion)
    seen_or_one = max(seen.item(), 1)
    return {"loss": loss_sum.item() / seen_or_one, "acc1": 100.0 * correct1.item() / seen_or_one,
            "acc5": 100.0 * correct5.item() / seen_or_one, "samples": seen.item(), "confusion": confusion,
            **({} if calibrated is None else calibrated.result(seen_or_one))}


class CalibratedSums:
    """What a temperature changes, summed over batches and processes: the loss of logits / temperature, and the
    confidence bins (ECE) of the probabilities before and after."""

    def __init__(self, temperature: float, device: torch.device):
        self.temperature = temperature
        self.loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        self.raw, self.scaled = ConfidenceBins(device=device), ConfidenceBins(device=device)

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        scaled = logits.double() / self.temperature
        self.loss_sum += F.cross_entropy(scaled, labels, reduction="sum")
        self.raw.add(logits.double().softmax(1), labels)
        self.scaled.add(scaled.softmax(1), labels)

    def result(self, seen: int) -> dict[str, float]:
        bins = (self.raw.counts, self.raw.confidence, self.raw.correct, self.scaled.counts, self.scaled.confidence,
                self.scaled.correct)
        distributed.sum_over_ranks(self.loss_sum, *bins)
        return {"ece": self.raw.ece(), "calibrated_loss": self.loss_sum.item() / seen,
                "calibrated_ece": self.scaled.ece()}


def confusion_counts(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """How many images of each true class (rows) got each top-1 class (columns)."""
    classes = scores.shape[1]
    counts = torch.bincount(labels * classes + scores.argmax(dim=1), minlength=classes * classes)
    return counts.view(classes, classes)


def summed_confusion(confusion: torch.Tensor) -> torch.Tensor:
    """The confusion matrix (rows: true class, columns: predicted) over every process, on the CPU."""
    size = torch.tensor([confusion.numel()], device=confusion.device)
    distributed.max_over_ranks(size)  # a process without images has an empty one
    whole = torch.zeros(int(size.item()), device=confusion.device, dtype=torch.long)
    whole[: confusion.numel()] += confusion.flatten()
    distributed.sum_over_ranks(whole)
    classes = int(round(whole.numel() ** 0.5))
    return whole.view(classes, classes).cpu()


def per_class_acc1(confusion: torch.Tensor, class_names: list[str]) -> dict[str, float | None]:
    """Each class's top-1 accuracy (its recall) in percent; None for a class without images."""
    support = confusion.sum(dim=1)
    return {name: None if support[i] == 0 else round(100.0 * confusion[i, i].item() / support[i].item(), 2)
            for i, name in enumerate(class_names)}


def balanced_acc1(confusion: torch.Tensor) -> float:
    """The mean of the per-class top-1 accuracies (recalls), in percent, over the classes that have images:
    scikit-learn's balanced_accuracy_score. Every class counts alike, however few images it has."""
    support = confusion.sum(dim=1)
    present = support > 0
    recall = confusion.diagonal()[present].double() / support[present]
    return 100.0 * recall.mean().item() if present.any() else 0.0


def macro_f1(confusion: torch.Tensor) -> float:
    """The mean F1 score over the classes that have images or predictions, in percent: scikit-learn's
    f1_score(average="macro") (a class never predicted, or predicted but absent, scores 0)."""
    support, predicted = confusion.sum(dim=1), confusion.sum(dim=0)
    seen = (support + predicted) > 0
    # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (support + predicted)
    f1 = 2 * confusion.diagonal()[seen].double() / (support + predicted)[seen]
    return 100.0 * f1.mean().item() if seen.any() else 0.0
