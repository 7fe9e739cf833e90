"""`cvrun export RUN_DIR [--format onnx|pt2] [--dynamic-batch]`: the run's best weights as RUN_DIR/export/model.onnx
(onnxruntime runs it; `cvrun predict model.onnx ...` too) or model.pt2 (torch.export), each with its metadata
(model.onnx.json, model.pt2.json; the model file carries it too).

Every export is checked before it is reported: onnx.checker, then the exported model against PyTorch on up to
1,000 of the run's test images (the same top-1 on every image, logits within 1e-4 of the largest).

A run calibrated by `cvrun calibrate` exports its calibrated model: the graph divides the logits by the
temperature (so the softmax of its output is the calibrated probability), the metadata names the temperature,
and the verification is against the same division in PyTorch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cvrun.commands import OneLineParser, run_parsed
from cvrun.errors import UserError

VERIFY_IMAGES = 1000


def verification_images(cfg: Any, card: Any) -> tuple[Any, str]:
    """Up to 1,000 of the run's test images, normalised; seeded noise where its data cannot be read."""
    import numpy as np
    import torch

    from cvrun.data.loaders import to_chw
    from cvrun.data.splits import build_splits
    from cvrun.engine.evaluate import Normalize

    try:
        test = build_splits(cfg.dataset).test
        count = min(VERIFY_IMAGES, len(test))
        images = torch.stack([to_chw(test.image(i, card.image_size)) for i in range(count)])
        what = f"{count} test images"
    except UserError as err:
        noise = np.random.default_rng(0).integers(0, 256, (VERIFY_IMAGES, 3, card.image_size, card.image_size))
        images = torch.from_numpy(noise.astype(np.uint8))
        what = f"{VERIFY_IMAGES} noise images (the run's test split cannot be read: {err})"
    return Normalize(card.mean, card.std, torch.device("cpu"))(images), what


def export(run_dir: Path, fmt: str, dynamic_batch: bool) -> int:
    from cvrun.commands.eval import load_run, usable_calibration
    from cvrun.engine.calibration import TemperatureScaled
    from cvrun.engine.export import FORMATS, compare, export_model, versions
    from cvrun.engine.inference import ModelCard
    from cvrun.io import atomic_write_bytes
    from cvrun.models.pretrained import rebuild_model

    cfg, state = load_run(run_dir)
    model, card = rebuild_model(cfg, state), ModelCard.of_run(cfg, state)
    calibration = usable_calibration(run_dir)
    temperature = None if calibration is None else calibration.temperature
    if temperature is not None:
        model = TemperatureScaled(model, temperature)
    folder = run_dir / "export"
    folder.mkdir(exist_ok=True)
    target = folder / FORMATS[fmt]
    partial = folder / f".partial-{os.getpid()}{target.suffix}"  # renamed into place once verified
    try:
        export_model(model, card, partial, dynamic_batch, temperature)
        images, what = verification_images(cfg, card)
        agreement = compare(model, partial, images)
        if not agreement.holds:
            raise UserError(f"the exported model disagrees with PyTorch on {what}: top-1 equal on "
                            f"{agreement.same_top1}/{agreement.images}, largest relative logit difference "
                            f"{agreement.max_relative_difference:.1e}; nothing was written")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    batch = "any batch size" if dynamic_batch else "batch size 1 (--dynamic-batch for any)"
    calibrated = {} if temperature is None else {"temperature": json.dumps(temperature)}
    metadata = {**card.metadata(), "format": fmt, "file": target.name, "batch": batch, **calibrated, **versions()}
    atomic_write_bytes(folder / f"{target.name}.json", (json.dumps({k: _plain(v) for k, v in metadata.items()},
                                                             indent=2) + "\n").encode())
    runner = "onnxruntime" if fmt == "onnx" else "the torch.export program"
    checked = "onnx.checker passed; " if fmt == "onnx" else ""
    print(f"{target} ({batch}): {checked}{runner} agrees with PyTorch on {what} (top-1 equal on "
          f"{agreement.same_top1}/{agreement.images}, largest relative logit difference "
          f"{agreement.max_relative_difference:.1e})")
    if temperature is not None:
        print(f"calibrated: the model divides its logits by the temperature {temperature:.4f} (calibration.json), "
              "so their softmax is the calibrated probability")
    return 0


def _plain(value: str) -> Any:
    """metadata.json holds values, not the JSON strings the model file's string-only metadata needs."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def run_app() -> int:
    from cvrun.engine.export import FORMATS

    parser = OneLineParser(prog="cvrun export", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished run folder")
    parser.add_argument("--format", choices=sorted(FORMATS), default="onnx")
    parser.add_argument("--dynamic-batch", action="store_true", help="any batch size (default: 1)")
    return run_parsed(parser, lambda args: export(args.run_dir, args.format, args.dynamic_batch))
