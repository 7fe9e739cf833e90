"""Predicting with a trained model: a run's best weights in PyTorch or an exported model.onnx in
onnxruntime, behind one call (uint8 NCHW batch -> logits), and the flip test-time augmentation both share.

A ModelCard is what a user needs to feed the model: its classes, image size, mean and std. Export writes
it into the model file, so a model.onnx predicts without cvrun's run folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from cvrun.data.samples import Sizing
from cvrun.engine.evaluate import Normalize
from cvrun.engine.runtime import autocast
from cvrun.errors import UserError

INPUT_LAYOUT = "float32 NCHW, RGB, (pixel / 255 - mean) / std, image_size x image_size"


@dataclass
class ModelCard:
    class_names: list[str]
    image_size: int
    mean: list[float]
    std: list[float]
    input_layout: str = INPUT_LAYOUT
    # How an image above 64 px becomes the input (dataset.crop_pct, dataset.interpolation): predict sizes files
    # as evaluation did. Files exported before these keys existed read as the defaults.
    crop_pct: float = 0.875
    interpolation: str = "bilinear"

    @staticmethod
    def of_run(cfg: Any, state: dict[str, Any]) -> "ModelCard":
        return ModelCard([str(name) for name in state["class_names"]], int(state["image_size"]),
                         [float(v) for v in cfg.dataset.mean], [float(v) for v in cfg.dataset.std],
                         crop_pct=float(cfg.dataset.crop_pct), interpolation=str(cfg.dataset.interpolation))

    @property
    def sizing(self) -> Sizing:
        return Sizing(self.image_size, self.crop_pct, self.interpolation)

    def metadata(self, **extra: str) -> dict[str, str]:
        """String key -> string value (ONNX's metadata_props, torch.export's extra files)."""
        return {**{key: json.dumps(value) for key, value in asdict(self).items()}, **extra}

    @staticmethod
    def from_metadata(metadata: dict[str, str], where: str) -> "ModelCard":
        try:
            return ModelCard(**{key: json.loads(metadata[key]) for key in ("class_names", "image_size", "mean",
                                                                             "std", "input_layout")},
                             **{key: json.loads(metadata[key]) for key in ("crop_pct", "interpolation")
                                if key in metadata})
        except (KeyError, ValueError):
            raise UserError(f"{where} has no cvrun metadata (class names, image size, mean, std): "
                            "export it with cvrun export RUN_DIR") from None


Logits = Callable[[torch.Tensor], torch.Tensor]


def import_or_explain(module: str) -> Any:
    """An optional dependency of export and predict, or a UserError saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{module} is not installed; pip install 'cvrun[export]' brings onnx, onnxruntime and "
                        "onnxscript") from None


class TorchPredictor:
    """A model on its device: uint8 NCHW batch -> float32 logits on the CPU, divided by the temperature of the
    run's calibration where there is one (their softmax is then the calibrated probability)."""

    def __init__(self, model: nn.Module, card: ModelCard, device: torch.device, dtype: torch.dtype | None = None,
                 temperature: float | None = None):
        self.model, self.card, self.dtype = model.to(device).eval(), card, dtype
        self.normalize = Normalize(card.mean, card.std, device)
        self.temperature = temperature

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with autocast(self.normalize.device, self.dtype):
            logits = self.model(self.normalize(images)).float().cpu()
        return logits if self.temperature is None else logits / self.temperature


class OnnxPredictor:
    """An exported model.onnx in onnxruntime (CPU), fed as its metadata says."""

    def __init__(self, path: Path):
        onnxruntime = import_or_explain("onnxruntime")
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types for a bad file
            raise UserError(f"{path} is not a model onnxruntime can load ({str(err).splitlines()[0]})") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.card = ModelCard.from_metadata(metadata, str(path))
        # A calibrated run's export divides its logits by the temperature inside the graph; this only says so.
        self.temperature = json.loads(metadata["temperature"]) if "temperature" in metadata else None
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        # An export without --dynamic-batch takes batches of one size: fed in chunks of it.
        self.fixed_batch = model_input.shape[0] if isinstance(model_input.shape[0], int) else None
        self.mean = np.asarray(self.card.mean, np.float32).reshape(1, -1, 1, 1) * 255
        self.std = np.asarray(self.card.std, np.float32).reshape(1, -1, 1, 1) * 255

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.normalized_logits((images.numpy().astype(np.float32) - self.mean) / self.std)

    def normalized_logits(self, inputs: np.ndarray) -> torch.Tensor:
        """Logits of inputs already normalised as the card says, fed in the batch size the model takes."""
        chunks = np.split(inputs, range(self.fixed_batch, len(inputs), self.fixed_batch)) if self.fixed_batch else [inputs]
        return torch.from_numpy(np.concatenate([self.session.run(None, {self.input_name: chunk})[0]
                                                for chunk in chunks]))


def flip_averaged_log_probs(logits_of: Logits, images: torch.Tensor) -> torch.Tensor:
    """Test-time augmentation: the log of the mean softmax over each image and its horizontal mirror (log
    probabilities act as logits: cross-entropy and arg-max read them the same)."""
    probs = logits_of(images).float().softmax(1) + logits_of(images.flip(3)).float().softmax(1)
    return (probs / 2).log()


class FlipTTA(nn.Module):
    """A model whose output is flip_averaged_log_probs of the wrapped one (for evaluate())."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return flip_averaged_log_probs(self.model, images)
