"""A trained model as a file other programs run: ONNX (torch.onnx.export, the dynamo exporter) or a
torch.export program (.pt2), each carrying the ModelCard a user needs to feed it, and each verified against
the PyTorch model before the command reports success."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cvrun.engine.inference import ModelCard, OnnxPredictor, import_or_explain
from cvrun.errors import UserError

FORMATS = {"onnx": "model.onnx", "pt2": "model.pt2"}
EXAMPLE_BATCH = 2  # traced with two images: a batch of one can be specialised away by the tracer
RELATIVE_TOLERANCE = 1e-4


class ExportFailed(UserError):
    """The exporter cannot express the model; the message names the operator where the exporter does."""


def operator_named(message: str) -> str:
    """The first ATen operator an exporter's message names (aten.xxx / aten::xxx), or its first line."""
    found = re.search(r"aten(?:\.|::)[A-Za-z_][\w.]*", message)
    return found.group(0) if found else message.strip().splitlines()[0]


def versions() -> dict[str, str]:
    import cvrun

    return {"cvrun_version": cvrun.__version__, "torch_version": torch.__version__}


def export_model(model: nn.Module, card: ModelCard, path: Path, dynamic_batch: bool,
                 temperature: float | None = None) -> None:
    """Write the model to `path` (its suffix says the format). Without dynamic_batch the batch size is 1.

    temperature: the run's calibration; `model` then divides its logits by it (TemperatureScaled), so the graph
    does, and the metadata names it (`temperature`) for a reader of the file."""
    model = model.eval().float()
    batch = EXAMPLE_BATCH if dynamic_batch else 1
    example = torch.zeros(batch, 3, card.image_size, card.image_size)
    dims = {"images": {0: torch.export.Dim("batch", min=1)}} if dynamic_batch else None
    calibrated = {} if temperature is None else {"temperature": json.dumps(temperature)}
    metadata = card.metadata(**versions(), **calibrated, batch=json.dumps("dynamic" if dynamic_batch else batch))
    try:
        if path.suffix == ".onnx":
            export_onnx(model, example, dims, metadata, path)
        else:
            program = torch.export.export(model, (example,), dynamic_shapes=dims)
            torch.export.save(program, str(path), extra_files={"cvrun.json": json.dumps(metadata)})
    except (UserError, OSError):
        raise
    except Exception as err:  # noqa: BLE001 - exporters raise many types; each is the same user-facing fault
        raise ExportFailed(f"the {path.suffix[1:]} exporter cannot express this model: {operator_named(str(err))}; "
                           f"try --format {'pt2' if path.suffix == '.onnx' else 'onnx'}") from None


def export_onnx(model: nn.Module, example: torch.Tensor, dims: Any, metadata: dict[str, str], path: Path) -> None:
    import contextlib
    import io

    onnx = import_or_explain("onnx")
    import_or_explain("onnxscript")  # the dynamo exporter's translation library
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter reports its steps on stdout
        program = torch.onnx.export(model, (example,), input_names=["images"], output_names=["logits"],
                                    dynamic_shapes=dims, dynamo=True, verbose=False)
    proto = program.model_proto
    onnx.helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


@dataclass
class Agreement:
    images: int
    same_top1: int
    max_relative_difference: float

    @property
    def holds(self) -> bool:
        return self.same_top1 == self.images and self.max_relative_difference <= RELATIVE_TOLERANCE


def exported_logits(path: Path, images: torch.Tensor) -> torch.Tensor:
    """The exported file's logits for normalised images, fed in the batch size it takes."""
    if path.suffix == ".onnx":
        return OnnxPredictor(path).normalized_logits(images.numpy())
    program = torch.export.load(str(path)).module()
    batch = json.loads(read_pt2_metadata(path)["batch"])
    step = batch if isinstance(batch, int) else len(images)
    with torch.inference_mode():
        return torch.cat([program(chunk) for chunk in images.split(step)])


def read_pt2_metadata(path: Path) -> dict[str, str]:
    extra = {"cvrun.json": ""}
    torch.export.load(str(path), extra_files=extra)
    return json.loads(extra["cvrun.json"])


def compare(model: nn.Module, path: Path, images: torch.Tensor) -> Agreement:
    """The exported file against the PyTorch model on the same normalised images: how many share the top-1
    class, and the largest logit difference relative to that image's largest logit."""
    with torch.inference_mode():
        reference = model.eval().float()(images)
    exported = exported_logits(path, images).float()
    scale = reference.abs().amax(dim=1).clamp_min(1e-12)
    relative = ((exported - reference).abs().amax(dim=1) / scale).max().item()
    same = int((exported.argmax(1) == reference.argmax(1)).sum())
    return Agreement(len(images), same, float(np.float32(relative)))
