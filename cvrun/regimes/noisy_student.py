"""`regime=noisy_student` (Xie et al. 2020): rounds of teacher -> pseudo-labels -> noised, equal-or-larger student.

Round 0 trains the first teacher on the labeled set, unless regime.teacher is given. Each round
k = 1..regime.rounds labels the unlabeled pool with the teacher (eval mode, no augmentation; soft
labels by default), trains student regime.students[k-1] on labeled + pseudo-labeled images with
noise (the aug option regime.noise_aug, model.dropout, model.drop_path), and hands the student on
as the next teacher. Each round is a complete run folder round_k/ inside the run folder.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from cvrun.config import AugConfig
from cvrun.engine.rundir import RunFolder, logging_to
from cvrun.errors import UserError
from cvrun.models import MODELS
from cvrun.paths import config_dir
from cvrun.regimes import register_regime, run_regime
from cvrun.regimes.common import log, refuse_mixing


@register_regime("noisy_student")
def noisy_student(cfg: Any, run: RunFolder) -> dict:
    started = time.time()
    r = cfg.regime
    refuse_mixing(cfg)
    students = student_models(cfg)
    noise = noise_aug(r.noise_aug)
    rounds: list[dict] = []
    teacher = r.teacher
    if teacher is None:
        first_teacher_cfg = copy.deepcopy(cfg)
        first_teacher_cfg.regime.name = "scratch"
        summary = run_round(first_teacher_cfg, run.path / "round_0")
        rounds.append(round_entry(0, cfg.model.name, summary))
        teacher = str(run.path / "round_0")
    for k, student in enumerate(students, start=1):
        # A round is a pseudo_label run of the student, with the noise as its aug: its config.yaml
        # reproduces that round alone.
        round_cfg = copy.deepcopy(cfg)
        round_cfg.regime.name, round_cfg.regime.teacher = "pseudo_label", teacher
        round_cfg.model.name, round_cfg.aug = student, noise
        summary = run_round(round_cfg, run.path / f"round_{k}")
        rounds.append(round_entry(k, student, summary))
        log.info("noisy_student round %d: %s student, test top-1 %.2f%%", k, student, summary["test_acc1"])
        teacher = str(run.path / f"round_{k}")
    log_round_table(rounds)
    # The run's result is the last student's (every summary key of a single run), plus the rounds.
    return run.update_summary(**{**summary, "rounds": rounds, "model": rounds[-1]["model"],
                                 "wall_seconds": round(time.time() - started, 2)})


def student_models(cfg: Any) -> list[str]:
    """regime.students, one per round; empty means model.name in every round."""
    r = cfg.regime
    students = [str(name) for name in r.students] or [cfg.model.name] * r.rounds
    if len(students) != r.rounds:
        raise UserError(f"regime.students lists {len(students)} models but regime.rounds={r.rounds}; "
                        "give one student per round")
    unknown = [name for name in students if name not in MODELS]
    if unknown:
        raise UserError(f"regime.students: unknown model {', '.join(unknown)}; valid models: {', '.join(sorted(MODELS))}")
    return students


def noise_aug(name: str) -> Any:
    """The aug option regime.noise_aug, composed as `aug=<name>` would compose it."""
    options = sorted(p.stem for p in (config_dir() / "aug").glob("*.yaml"))
    if name not in options:
        raise UserError(f"regime.noise_aug: unknown aug option '{name}'; valid options: {', '.join(options)}")
    return OmegaConf.merge(OmegaConf.structured(AugConfig), OmegaConf.load(config_dir() / "aug" / f"{name}.yaml"))


def run_round(cfg: Any, path: Path) -> dict:
    """One round as a complete run folder: config.yaml, train.log, metrics, checkpoints, summary."""
    stage = RunFolder(path)
    stage.write_config(OmegaConf.to_yaml(cfg))
    with logging_to(path / "train.log"):
        log.info("run folder: %s", path)
        return run_regime(cfg, stage)


def log_round_table(rounds: list[dict]) -> None:
    """The per-round table, as train.log's last lines."""
    log.info("noisy_student rounds:")
    log.info("%5s  %-20s  %8s  %11s  %9s", "round", "model", "kept", "pseudo acc1", "test acc1")
    for r in rounds:
        log.info("%5d  %-20s  %8s  %11s  %9.2f", r["round"], r["model"],
                 "-" if r["pseudo_labels_kept"] is None else r["pseudo_labels_kept"],
                 "-" if r["pseudo_label_acc1"] is None else f"{r['pseudo_label_acc1']:.2f}", r["test_acc1"])


def round_entry(k: int, model: str, summary: dict) -> dict:
    return {"round": k, "model": model, "test_acc1": summary.get("test_acc1"),
            "best_val_acc1": summary.get("best_val_acc1"),
            "pseudo_labels_kept": summary.get("pseudo_labels_kept"),
            "pseudo_label_acc1": summary.get("pseudo_label_acc1")}
