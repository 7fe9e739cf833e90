"""`cvrun predict RUN_DIR|MODEL.onnx PATH... [--top-k K] [--tta] [--out FILE]`: classify image files.

A run folder predicts with its best weights in PyTorch; an exported model.onnx with onnxruntime alone.
Either way each image is read, resized and normalised as the run's config says. The CSV has a row per file:
`path, top1, top1_prob, ..., error`; a file that cannot be read is a row with its error, and the exit
status is 1 when any is. A run calibrated by `cvrun calibrate` gives calibrated probabilities (its exported
model.onnx too). With --min-confidence P an `abstained` column marks the rows whose top-1 probability is below
P, and the coverage (the share not abstained) is reported.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from cvrun.commands import OneLineParser, run_parsed
from cvrun.errors import UserError

SHOWN_ROWS = 5


def load_predictor(source: Path) -> Any:
    """A run folder's best weights on the run's device, or an exported model.onnx."""
    from cvrun.commands.eval import load_run, usable_calibration
    from cvrun.engine.inference import ModelCard, OnnxPredictor, TorchPredictor
    from cvrun.engine.runtime import autocast_dtype, select_device
    from cvrun.models.pretrained import rebuild_model

    if source.suffix == ".onnx":
        return OnnxPredictor(source)
    cfg, state = load_run(source)
    device = select_device(cfg.trainer.device)
    precision = str(cfg.trainer.precision)
    dtype = None if device.type == "cpu" and precision == "16" else autocast_dtype(precision, device)
    calibration = usable_calibration(source)
    return TorchPredictor(rebuild_model(cfg, state), ModelCard.of_run(cfg, state), device, dtype,
                          calibration and calibration.temperature)


def predict_files(predictor: Any, paths: list[str], top_k: int, tta: bool, batch_size: int,
                  min_confidence: float | None = None) -> list[dict[str, Any]]:
    """One row per path: its top-k classes (all of them when fewer) with their probabilities, or its error; with
    min_confidence, whether the prediction is abstained (its top-1 probability below it)."""
    import torch
    from tqdm import tqdm

    from cvrun.data.files import image_file_loader
    from cvrun.data.loaders import file_workers
    from cvrun.engine.inference import flip_averaged_log_probs

    names = predictor.card.class_names
    top_k = min(top_k, len(names))
    rows = []
    loader = image_file_loader(paths, predictor.card.image_size, batch_size, file_workers(), predictor.card.sizing)
    batches = tqdm(loader, desc="predict", unit="batch", disable=None, file=sys.stderr)
    for batch, (images, errors) in enumerate(batches):
        with torch.inference_mode():
            log_probs = flip_averaged_log_probs(predictor, images) if tta else predictor(images).log_softmax(1)
        probs, classes = log_probs.exp().topk(top_k, dim=1)
        for offset, error in enumerate(errors):
            row: dict[str, Any] = {"path": paths[batch * batch_size + offset]}
            for rank in range(top_k):
                row[f"top{rank + 1}"] = "" if error else names[classes[offset, rank]]
                row[f"top{rank + 1}_prob"] = "" if error else f"{probs[offset, rank].item():.6f}"
            if min_confidence is not None:
                row["abstained"] = "" if error else ("yes" if probs[offset, 0].item() < min_confidence else "no")
            row["error"] = error
            rows.append(row)
    return rows


def run_folder_of(source: Path) -> Path | None:
    """The run folder a source belongs to: itself, or the one above an exported RUN_DIR/export/model.onnx."""
    return next((folder for folder in (source, *source.parents) if (folder / "config.yaml").is_file()), None)


def written_by_predict(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.readline().startswith(b"path,top1,top1_prob")


def output_path(out: Path | None, source: Path) -> Path:
    """--out as given (the user names it: it may be replaced) unless it is a folder, the model or a file of the
    run (only an earlier predictions CSV there may be replaced); else predictions.csv here, never replaced."""
    if out is not None:
        if out.is_dir():
            raise UserError(f"--out {out} is a folder; name the CSV file to write, such as {out / 'predictions.csv'}")
        run, target = run_folder_of(source.resolve()), out.resolve()
        if target == source.resolve():
            raise UserError(f"--out {out} is the model predict reads; name a new file such as predictions.csv")
        if run is not None and run in target.parents and target.is_file() and not written_by_predict(target):
            raise UserError(f"--out {out} is a file of the run {run}, which predict never replaces; name a new file "
                            f"such as {run / 'predictions.csv'}")
        return out
    default = Path("predictions.csv")
    if default.exists():
        raise UserError(f"{default.absolute()} exists; pass --out FILE to write elsewhere or to replace it")
    return default


def check_source(source: Path) -> None:
    if source.suffix == ".onnx" and not source.is_file():
        raise UserError(f"{source} does not exist; export one with cvrun export RUN_DIR")
    if source.suffix != ".onnx" and (source.is_file() or source.suffix == ".pt2"):
        raise UserError(f"{source}: predict reads run folders and .onnx files (cvrun export RUN_DIR --format onnx), "
                        f"not {source.suffix or 'other'} files")


def checked_inputs(source: Path, arguments: list[str], top_k: int, batch_size: int,
                   min_confidence: float | None = None) -> tuple[Any, list[str]]:
    """The source's predictor and the image paths `arguments` name, once the settings are checked (cvrun.api's
    predict too)."""
    from cvrun.data.files import collect_image_paths

    if top_k < 1:
        raise UserError(f"--top-k {top_k} is not a count; use 1 or more")
    if batch_size < 1:
        raise UserError(f"--batch-size {batch_size} is not a count; use 1 or more")
    if min_confidence is not None and not 0 <= min_confidence <= 1:
        raise UserError(f"--min-confidence {min_confidence:g} is not a probability; use a value from 0 to 1, "
                        "such as 0.9")
    check_source(source)
    paths = collect_image_paths(arguments)
    if not paths:
        raise UserError(f"{' '.join(arguments)}: no image paths listed; put one image path a line in the list")
    return load_predictor(source), paths


def predict(source: Path, arguments: list[str], top_k: int, tta: bool, out: Path | None, batch_size: int,
            min_confidence: float | None = None) -> int:
    from cvrun.io import atomic_write_bytes
    from cvrun.report.table import to_csv

    predictor, paths = checked_inputs(source, arguments, top_k, batch_size, min_confidence)
    target = output_path(out, source)
    rows = predict_files(predictor, paths, top_k, tta, batch_size, min_confidence)
    text = to_csv(rows, list(rows[0]))
    atomic_write_bytes(target, text.encode())
    print("".join(text.splitlines(keepends=True)[:SHOWN_ROWS + 1]), end="")
    failed = sum(1 for row in rows if row["error"])
    print(f"{len(rows)} predictions{' with flip TTA' if tta else ''} in {target}"
          + (f"; {failed} file(s) could not be read (their rows say why)" if failed else ""))
    if predictor.temperature is not None:
        print(f"probabilities calibrated with temperature {predictor.temperature:.4f} (cvrun calibrate)")
    if min_confidence is not None:
        print(coverage_line(rows, min_confidence))
    return 1 if failed else 0


def coverage_line(rows: list[dict[str, Any]], min_confidence: float) -> str:
    """Coverage: the share of the readable images predicted (top-1 probability at least min_confidence)."""
    readable = [row for row in rows if not row["error"]]
    covered = sum(row["abstained"] == "no" for row in readable)
    share = 100 * covered / len(readable) if readable else 0.0
    return (f"coverage {share:.2f}%: {covered} of {len(readable)} images predicted with confidence >= "
            f"{min_confidence:g}, {len(readable) - covered} abstained (the abstained column)")


def run_app() -> int:
    parser = OneLineParser(prog="cvrun predict", description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a run folder, or a model.onnx from cvrun export")
    parser.add_argument("paths", nargs="+", help="image files, folders (searched recursively), .txt lists of paths")
    parser.add_argument("--top-k", type=int, default=5, help="classes per image (default 5)")
    parser.add_argument("--tta", action="store_true", help="average over the horizontal flip")
    parser.add_argument("--out", type=Path, default=None, help="the CSV to write (default predictions.csv)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--min-confidence", type=float, default=None, metavar="P",
                        help="abstain below this top-1 probability (0-1): an abstained column and the coverage")
    return run_parsed(parser, lambda args: predict(args.source, args.paths, args.top_k, args.tta, args.out,
                                                   args.batch_size, args.min_confidence))
