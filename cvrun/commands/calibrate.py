"""`cvrun calibrate RUN_DIR [dataset.root=DIR]`: fit a temperature on the run's validation split (never its test
split) for its best checkpoint, and keep it in RUN_DIR/calibration.json, which eval, inspect, predict and export
then use (a refit replaces it; best.pt is never touched).

The temperature T minimises the validation split's negative log-likelihood of softmax(logits / T)
(scipy.optimize.minimize_scalar, bounded Brent on log T). Top-1 stays as it was; NLL and ECE are reported
before and after.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from cvrun.commands import OneLineParser, run_parsed
from cvrun.errors import UserError


def parse_settings(items: list[str]) -> dict[str, Any]:
    """The run's data where it has moved: dataset.root=DIR, or another path key of its dataset."""
    moved: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("dataset."):
            raise UserError(f"{item} is not a setting of cvrun calibrate; its settings say where the run's data is "
                            "now: dataset.root=DIR (or the run's dataset's other path keys)")
        moved[key] = value
    return moved


def validation_logits(run_dir: Path, settings: dict[str, Any]) -> tuple[Any, Any, dict]:
    """The best checkpoint's logits and the labels of the run's validation split, and the checkpoint."""
    from cvrun.commands.eval import load_run, move_data, notes_on_the_run
    from cvrun.data.loaders import make_loader
    from cvrun.data.splits import build_splits
    from cvrun.engine.evaluate import Normalize, predict
    from cvrun.engine.runtime import autocast_dtype, select_device
    from cvrun.models.pretrained import rebuild_model

    cfg, state = load_run(run_dir)
    move_data(cfg, settings)
    data = build_splits(cfg.dataset)
    if data.val is None or not len(data.val):
        raise _no_val(run_dir)
    if data.class_names != list(state["class_names"]):
        raise UserError(f"the data of {run_dir} now has classes {data.class_names}, but its checkpoint "
                        f"was trained on {state['class_names']}")
    for note in notes_on_the_run(run_dir, state, "val", data.record):
        print(f"cvrun: note: {note}", file=sys.stderr)
    device = select_device(cfg.trainer.device)
    precision = str(cfg.trainer.precision)
    dtype = None if device.type == "cpu" and precision == "16" else autocast_dtype(precision, device)
    batch_size = cfg.trainer.eval_batch_size or 2 * cfg.trainer.batch_size
    loader = make_loader(data.val, data.image_size, batch_size, train=False, seed=cfg.trainer.seed,
                         num_workers=cfg.trainer.num_workers, cuda=device.type == "cuda")
    normalize = Normalize(list(cfg.dataset.mean), list(cfg.dataset.std), device, cfg.trainer.channels_last)
    logits, labels = predict(rebuild_model(cfg, state).to(device), loader, normalize, dtype)
    return logits, labels, state


def _no_val(run_dir: Path) -> UserError:
    return UserError(f"{run_dir} has no validation split (trained with dataset.val_fraction=0), and a temperature "
                     "is never fitted on the test split: train with dataset.val_fraction=0.1 to calibrate")


def calibrate_run(run_dir: Path, settings: dict[str, Any]) -> int:
    from cvrun.engine.calibration import OPTIMISER, calibrate, save_calibration

    logits, labels, state = validation_logits(run_dir, settings)
    calibration = calibrate(logits, labels, run_dir / "checkpoints" / "best.pt", state.get("epoch"))
    path = save_calibration(run_dir, calibration)
    c = calibration
    print(f"temperature {c.temperature:.4f} fitted on the validation split ({c.images} images, top-1 "
          f"{c.val_acc1:.2f}% either way; {OPTIMISER})")
    print(f"val NLL {c.val_nll_before:.4f} -> {c.val_nll_after:.4f}  ECE {c.val_ece_before:.2f}% -> "
          f"{c.val_ece_after:.2f}%  ({c.ece_bins} bins)")
    print(f"{path}: eval, inspect, predict and export use it while checkpoints/best.pt stays as it is")
    return 0


def run_app() -> int:
    parser = OneLineParser(prog="cvrun calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished run folder trained with a validation split")
    parser.add_argument("settings", nargs="*", help="dataset.root=DIR where the run's data has moved")
    return run_parsed(parser, lambda args: calibrate_run(args.run_dir, parse_settings(args.settings)))
