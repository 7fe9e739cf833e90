"""Temperature scaling (Guo et al., 2017): one scalar T fitted on the validation split so that softmax(logits / T)
states probabilities that match how often the model is right. Top-1 never changes (dividing by T > 0 keeps the
order of the logits); the negative log-likelihood and the expected calibration error (ECE) do.

RUN_DIR/calibration.json holds T with the SHA-256 of the best.pt it was fitted for: eval, inspect, predict and
export use it only while best.pt is that file (training on since makes it stale: ignored with a warning).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cvrun.io import atomic_write_bytes, file_sha256

CALIBRATION_FILE = "calibration.json"
ECE_BINS = 15
# The fit searches log T in this interval: T from 1/100 to 100 (a model this far off has no use for a finer T).
LOG_T_BOUNDS = (-math.log(100.0), math.log(100.0))
OPTIMISER = "scipy.optimize.minimize_scalar (bounded Brent) on log T"


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of softmax(logits / temperature), in float64."""
    return F.cross_entropy(logits.double() / temperature, labels).item()


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T minimising the NLL of softmax(logits / T). The NLL is convex in 1/T, so it has one minimum along
    log T, which bounded Brent finds without a learning rate or a step count to choose."""
    from scipy.optimize import minimize_scalar

    logits = logits.double()
    found = minimize_scalar(lambda log_t: nll(logits, labels, math.exp(log_t)), bounds=LOG_T_BOUNDS,
                            method="bounded", options={"xatol": 1e-6})
    return math.exp(found.x)


class ConfidenceBins:
    """Images per equal-width confidence bin with their summed confidence and correct answers: the ECE and the
    reliability diagram of any number of batches (sums, so a distributed evaluation adds them over ranks)."""

    def __init__(self, bins: int = ECE_BINS, device: torch.device | str = "cpu"):
        self.bins = bins
        self.edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64, device=device)
        self.counts = torch.zeros(bins, dtype=torch.float64, device=device)
        self.confidence = torch.zeros(bins, dtype=torch.float64, device=device)
        self.correct = torch.zeros(bins, dtype=torch.float64, device=device)

    def add(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        """probs: N x C class probabilities; labels: N true classes."""
        confidence, predicted = probs.double().max(dim=1)
        # Bin b holds edges[b] < confidence <= edges[b + 1] (the first bin also 0).
        which = torch.bucketize(confidence, self.edges[1:-1])
        self.counts += torch.bincount(which, minlength=self.bins).double()
        self.confidence += torch.bincount(which, weights=confidence, minlength=self.bins)
        self.correct += torch.bincount(which, weights=(predicted == labels).double(), minlength=self.bins)

    def ece(self) -> float:
        """Expected calibration error in percent: the count-weighted gap between confidence and accuracy."""
        total = self.counts.sum().clamp_min(1)
        return 100 * ((self.confidence - self.correct).abs().sum() / total).item()

    def table(self) -> list[dict[str, float]]:
        """Each non-empty bin's edges, count, mean confidence and accuracy (the reliability diagram)."""
        return [{"low": self.edges[b].item(), "high": self.edges[b + 1].item(), "count": int(self.counts[b]),
                 "confidence": (self.confidence[b] / self.counts[b]).item(),
                 "accuracy": (self.correct[b] / self.counts[b]).item()}
                for b in range(self.bins) if self.counts[b] > 0]


def ece_of(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    bins = ConfidenceBins()
    bins.add((logits.double() / temperature).softmax(1), labels)
    return bins.ece()


@dataclass
class Calibration:
    """What calibration.json holds: the temperature, what it was fitted on and for, and what it changed."""
    temperature: float
    checkpoint_sha256: str
    best_epoch: int | None
    split: str
    images: int
    val_acc1: float
    val_nll_before: float
    val_nll_after: float
    val_ece_before: float
    val_ece_after: float
    optimiser: str = OPTIMISER
    ece_bins: int = ECE_BINS


def calibrate(logits: torch.Tensor, labels: torch.Tensor, checkpoint: Path, best_epoch: int | None) -> Calibration:
    """Fit T on a validation split's logits of the checkpoint's model; the record of the fit."""
    temperature = round(fit_temperature(logits, labels), 6)  # the stored T is the one the figures are for
    acc1 = 100.0 * (logits.argmax(1) == labels).double().mean().item()
    return Calibration(temperature=temperature, checkpoint_sha256=file_sha256(checkpoint), best_epoch=best_epoch,
                       split="val", images=len(labels), val_acc1=round(acc1, 2),
                       val_nll_before=round(nll(logits, labels), 6),
                       val_nll_after=round(nll(logits, labels, temperature), 6),
                       val_ece_before=round(ece_of(logits, labels), 4),
                       val_ece_after=round(ece_of(logits, labels, temperature), 4))


def save_calibration(run_dir: Path, calibration: Calibration) -> Path:
    path = Path(run_dir) / CALIBRATION_FILE
    atomic_write_bytes(path, (json.dumps(asdict(calibration), indent=2) + "\n").encode())
    return path


def stored_calibration(run_dir: Path) -> tuple[Calibration | None, str | None]:
    """The run's calibration when it was fitted for its present best.pt; else None, with a warning to show when
    there is a calibration.json that cannot be used (fitted for another best.pt, or unreadable)."""
    path = Path(run_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None, None
    refit = f"run cvrun calibrate {run_dir} again"
    try:
        calibration = Calibration(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None, f"{path} cannot be read; probabilities are not calibrated: {refit}"
    if calibration.checkpoint_sha256 != file_sha256(Path(run_dir) / "checkpoints" / "best.pt"):
        return None, (f"{path} was fitted for another checkpoints/best.pt (the run trained on since); its "
                      f"temperature is ignored and probabilities are not calibrated: {refit}")
    return calibration, None


class TemperatureScaled(nn.Module):
    """A model whose logits are divided by the temperature: softmax of them is the calibrated probability. The
    division is part of the module, so an exported graph carries it."""

    def __init__(self, model: nn.Module, temperature: float):
        super().__init__()
        self.model = model
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images) / self.temperature
