"""`cvrun reproduce RUN_DIR [--check] [KEY=VALUE...]`: run a saved config again and compare the results.

The new run starts from RUN_DIR/config.yaml (the resolved config, seed
included), with any overrides applied on top, in
outputs/DATE/TIME_reproduce_<regime>_<model>/. Its summary.json names the run
it reproduces and the overrides. The two runs' results are printed side by
side. With --check the exit status says whether they agree: exactly when
the original was deterministic on the CPU (DESIGN.md promises the same
digits there), else within TOLERANCE; 0 when they agree, 1 when not. What the
new run was given that the original was not (other data splits, another
checkpoint of its teacher or pretrained source) is named beside the verdict.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from cvrun.commands import OneLineParser, run_parsed
from cvrun.errors import UserError

log = logging.getLogger("cvrun")

COMPARED = ["epochs_run", "final_train_loss", "best_epoch", "best_val_acc1", "final_val_acc1", "test_acc1", "test_acc5",
            "test_loss"]
# Agreement off the exact path (GPU kernels, non-deterministic algorithms): accuracy points, loss units.
TOLERANCE = {"acc": 1.0, "loss": 0.05}


def load_original(run_dir: Path) -> tuple[Any, dict[str, Any]]:
    from omegaconf import OmegaConf

    from cvrun.report.table import read_json

    config, summary = run_dir / "config.yaml", read_json(run_dir / "summary.json")
    if not config.is_file():
        raise UserError(f"{run_dir} has no config.yaml; give a run folder made by `cvrun train`")
    if summary.get("status") != "completed":
        raise UserError(f"{run_dir} did not complete (status {summary.get('status', 'missing')}); "
                        "only a completed run has results to reproduce")
    try:
        return OmegaConf.load(config), summary
    except Exception as err:  # noqa: BLE001 - a YAML syntax or encoding error: the file is what is wrong
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{config} cannot be read ({reason}); it is not the config.yaml cvrun wrote: "
                        "restore it, or reproduce another run") from None


def apply_overrides(config: Any, overrides: list[str]) -> Any:
    """The saved config with `key=value` overrides on top; `group=option` replaces that group's section
    by the option's YAML, as `cvrun train group=option` would compose it."""
    from omegaconf import OmegaConf

    from cvrun.config import TrainConfig, option_values, validate
    from cvrun.paths import config_dir

    for override in overrides:
        key, _, option = override.partition("=")
        if "=" not in override or override.startswith("-"):
            raise UserError(f"'{override}' is not an override; write key=value, e.g. trainer.epochs=2")
        if key in ("experiment", "hparams_search"):
            raise UserError(f"reproduce takes key=value and group=option overrides, not {key}=...: its presets "
                            f"set several groups; start a new run with `cvrun train {key}={option}`")
        if (config_dir() / key).is_dir():
            config[key] = option_values(key, option)
        else:
            config = OmegaConf.merge(config, OmegaConf.from_dotlist([override]))
    return validate(config, TrainConfig)


def new_run_folder(cfg: Any) -> Path:
    from cvrun.io import claim_folder, forget_claims

    forget_claims()  # a new launch: never the folder an earlier reproduce in this process claimed
    name = f"outputs/{time.strftime('%Y-%m-%d/%H-%M-%S')}_reproduce_{cfg.regime.name}_{cfg.model.name}"
    return claim_folder(name).absolute()


def agree(name: str, original: Any, new: Any, exact: bool) -> bool:
    if exact or not isinstance(original, (int, float)) or not isinstance(new, (int, float)):
        return original == new
    if name.endswith("loss"):
        return abs(original - new) <= TOLERANCE["loss"]
    if "acc" in name:
        return abs(original - new) <= TOLERANCE["acc"]
    return original == new


def shown(value: Any) -> str:
    """A figure as the table shows it: floats to 4 decimals at most (the comparison uses the full values)."""
    return f"{value:.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def comparison(original: dict[str, Any], new: dict[str, Any], exact: bool) -> tuple[str, bool]:
    lines = [f"{'metric':<17}{'original':>12}  {'reproduced':>12}  agrees"]
    all_agree = True
    for name in COMPARED:
        same = agree(name, original.get(name), new.get(name), exact)
        all_agree &= same
        lines.append(f"{name:<17}{shown(original.get(name)):>12}  {shown(new.get(name)):>12}  {'yes' if same else 'NO'}")
    rule = ("exact (deterministic run on the CPU)" if exact else
            f"within {TOLERANCE['acc']} accuracy points and {TOLERANCE['loss']} loss "
            "(the original was not deterministic on the CPU, so digits may differ)")
    lines.append(f"comparison: {rule}")
    return "\n".join(lines), all_agree


def changed_inputs(original: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What the run was given that differs from what the original was given, in words: the data (the splits'
    fingerprints) and the checkpoints of its teacher or pretrained source (their hashes)."""
    from cvrun.data.splits import split_changes
    from cvrun.regimes.base import SOURCE_KEYS

    changes = []
    if original.get("splits") and new.get("splits"):
        changes += [f"the data changed: {change}" for change in split_changes(original["splits"], new["splits"])]
    for key in SOURCE_KEYS:
        name = f"{key.split('.')[-1]}_sha256"
        if original.get(name) and original.get(name) != new.get(name):
            changes.append(f"the checkpoint of {key} changed: sha256 {original[name]} then, {new.get(name)} now")
    return changes


def reproduce(run_dir: Path, overrides: list[str], check: bool) -> int:
    from cvrun.commands.train import check_job, held_folder, start_run
    from cvrun.engine.rundir import RunFolder, logging_to
    from cvrun.engine.runtime import signals_raise

    run_dir = run_dir.absolute()
    saved, original = load_original(run_dir)
    cfg = apply_overrides(saved, overrides)
    check_job(cfg)  # as `cvrun train` does: a mistake found now leaves no folder behind
    run = RunFolder(new_run_folder(cfg))
    # What Hydra's job logging gives `cvrun train`: the console and the run's train.log.
    with logging_to(run.path / "train.log", console=True), signals_raise(), held_folder(run.path):
        log.info("reproducing %s%s", run_dir, f" with {' '.join(overrides)}" if overrides else "")
        run.update_summary(reproduces=str(run_dir), reproduce_overrides=overrides)
        new = start_run(cfg, run)
    exact = bool(saved.trainer.deterministic) and original.get("device") == "cpu" and new.get("device") == "cpu"
    table, all_agree = comparison(original, new, exact)
    changes = changed_inputs(original, new)
    print(table)
    if changes:
        print(f"since the original ran, {'; '.join(changes)}")
    print(f"reproduced in {run.path}")
    if not check:
        return 0
    because = " because their inputs differ: " + "; ".join(changes) if changes else ""
    print("check: the runs agree" if all_agree else f"check: the runs DIFFER{because}")
    return 0 if all_agree else 1


def run_app() -> int:
    parser = OneLineParser(prog="cvrun reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished run folder")
    parser.add_argument("overrides", nargs="*", help="key=value changes, reported as such")
    parser.add_argument("--check", action="store_true", help="exit 1 unless the results agree")
    return run_parsed(parser, lambda args: reproduce(args.run_dir, args.overrides, args.check))
