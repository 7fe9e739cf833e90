"""`cvrun eval RUN_DIR [split=test|val] [--tta]`: score a finished run's best checkpoint (with --tta, also averaged
over the horizontal flip, and the difference it makes)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from cvrun.commands import run_hydra
from cvrun.errors import UserError


def expand_args(args: list[str]) -> list[str]:
    """`dataset.path=FILE` as Hydra's `+dataset.path=FILE`: eval's dataset section starts empty and takes the
    path keys of the run's own dataset, which move_data checks once the run is read."""
    for arg in args:
        if arg.startswith("dataset="):
            raise UserError(f"{arg}: eval scores the run on its own dataset; where that data has moved, give "
                            "dataset.root=DIR (or another of its path keys)")
    return [f"+{arg}" if arg.startswith("dataset.") and "=" in arg else arg for arg in args]


def load_run(run_dir: Path) -> tuple[Any, dict]:
    """A run folder's validated config and its best checkpoint."""
    from cvrun.config import load_run_config
    from cvrun.io import load_checkpoint
    from cvrun.regimes import REGIMES

    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir} is not a cvrun run folder (no config.yaml); "
                        "pass a folder such as outputs/YYYY-MM-DD/HH-MM-SS_scratch_resnet18")
    best = run_dir / "checkpoints" / "best.pt"
    cfg = load_run_config(run_dir / "config.yaml")
    no_weights = REGIMES.get(cfg.regime.name).no_weights
    if no_weights is not None:
        raise UserError(f"{run_dir} is a regime={cfg.regime.name} run: {no_weights.format(run_dir=run_dir)}")
    if not best.is_file():
        raise UserError(f"{run_dir} has no checkpoints/best.pt: the run ended before its first epoch")
    return cfg, load_checkpoint(best)


def move_data(cfg: Any, moved: dict[str, str]) -> None:
    """Point a run's config at its data where it has moved since training: `moved` maps path keys of the run's
    dataset (dataset.root=DIR; a CSV source's dataset.path=FILE, the shards' dataset.shards=...) to their new
    places, made absolute from the launch folder. Any other key is a UserError naming the run's path keys."""
    from cvrun.config import option_schema, schema_path_keys
    from cvrun.paths import launch_path

    allowed = sorted(f"dataset.{key}" for key in schema_path_keys(option_schema("dataset", cfg.dataset.name)))
    for key, value in moved.items():
        if value in (None, ""):
            raise UserError(f"'{key}=' has no value; write {key}=PATH, where the data is now")
        if key not in allowed:
            raise UserError(f"{key} is not where the data of a dataset={cfg.dataset.name} run lies; give its new "
                            f"place with {', '.join(k + '=...' for k in allowed)}")
        cfg.dataset[key.removeprefix("dataset.")] = str(launch_path(value))


def notes_on_the_run(run_dir: Path, state: dict, split: str, record: dict) -> list[str]:
    """What a user should know about the numbers eval prints: a run still training, data that changed."""
    from cvrun.data.splits import split_changes
    from cvrun.io import lock_holder
    from cvrun.report.table import read_json

    notes = []
    holder = lock_holder(run_dir)
    if holder is not None:
        notes.append(f"{run_dir} is still training ({holder}): this scores its best checkpoint so far "
                     f"(epoch {state.get('epoch')})")
    recorded = read_json(run_dir / "summary.json").get("splits", {})
    if split in recorded and split in record and recorded[split] != record[split]:
        changes = split_changes({split: recorded[split]}, {split: record[split]})
        notes.append(f"the {split} split differs from the one the run was scored on: {'; '.join(changes[:5])}")
    return notes


def usable_calibration(run_dir: Path) -> Any:
    """The run's calibration (cvrun calibrate) while it fits its best.pt, else None; a stale one is one warning."""
    from cvrun.engine.calibration import stored_calibration

    calibration, warning = stored_calibration(run_dir)
    if warning:
        print(f"cvrun: warning: {warning}", file=sys.stderr)
    return calibration


def evaluate_run(cfg: Any) -> dict:
    from cvrun.config import EvalConfig, validate
    from cvrun.data.loaders import make_loader
    from cvrun.data.splits import build_splits
    from cvrun.engine.evaluate import Normalize, evaluate
    from cvrun.engine.inference import FlipTTA
    from cvrun.engine.runtime import autocast_dtype, select_device
    from cvrun.models.pretrained import rebuild_model

    from omegaconf import OmegaConf

    if OmegaConf.is_missing(cfg, "run_dir"):
        raise UserError("cvrun eval needs a run folder: cvrun eval RUN_DIR [split=test|val]")
    cfg = validate(cfg, EvalConfig)
    if cfg.split not in ("test", "val"):
        raise UserError(f"split={cfg.split} is not a split; use split=test or split=val")
    run_dir = Path(cfg.run_dir)
    train_cfg, state = load_run(run_dir)
    move_data(train_cfg, {f"dataset.{key}": value for key, value in cfg.dataset.items()})
    data = build_splits(train_cfg.dataset)
    for note in notes_on_the_run(run_dir, state, cfg.split, data.record):
        print(f"cvrun: note: {note}", file=sys.stderr)
    if data.class_names != list(state["class_names"]):
        raise UserError(f"the data of {run_dir} now has classes {data.class_names}, but its checkpoint "
                        f"was trained on {state['class_names']}")
    samples = data.test if cfg.split == "test" else data.val
    if samples is None:
        raise UserError(f"{run_dir} was trained with dataset.val_fraction=0: it has no val split; use split=test")
    model = rebuild_model(train_cfg, state)
    device = select_device(cfg.device)
    precision = train_cfg.trainer.precision
    dtype = None if device.type == "cpu" and str(precision) == "16" else autocast_dtype(precision, device)
    model.to(device)
    batch_size = cfg.batch_size or train_cfg.trainer.eval_batch_size or 2 * train_cfg.trainer.batch_size
    loader = make_loader(samples, data.image_size, batch_size, train=False, seed=train_cfg.trainer.seed,
                         num_workers=train_cfg.trainer.num_workers, cuda=device.type == "cuda")
    normalize = Normalize(list(train_cfg.dataset.mean), list(train_cfg.dataset.std), device,
                          train_cfg.trainer.channels_last)
    progress = cfg.split if cfg.progress else None  # a bar once the evaluation has taken a while
    calibration = usable_calibration(run_dir)
    result = evaluate(model, loader, normalize, dtype, progress, calibration and calibration.temperature)
    print(f"{cfg.split}: top-1 {result['acc1']:.2f}%  top-5 {result['acc5']:.2f}%  "
          f"({result['samples']} images)  {run_dir}")
    if calibration is not None:
        print(f"{cfg.split} calibrated (temperature {calibration.temperature:.4f}, calibration.json; top-1 as "
              f"above): NLL {result['loss']:.4f} -> {result['calibrated_loss']:.4f}  ECE {result['ece']:.2f}% -> "
              f"{result['calibrated_ece']:.2f}%")
    if cfg.tta:
        flipped = evaluate(FlipTTA(model), loader, normalize, dtype, progress)
        print(f"{cfg.split} with flip TTA: top-1 {flipped['acc1']:.2f}% ({flipped['acc1'] - result['acc1']:+.2f})  "
              f"top-5 {flipped['acc5']:.2f}% ({flipped['acc5'] - result['acc5']:+.2f})")
        result["tta"] = flipped
    return result


def prepare_args(args: list[str]) -> list[str]:
    """`--tta` is the override tta=true."""
    from cvrun.overrides import with_overrides

    return with_overrides([arg for arg in args if arg != "--tta"], ["tta=true"]) if "--tta" in args else args


def run_app() -> int:
    return run_hydra("eval", evaluate_run)
