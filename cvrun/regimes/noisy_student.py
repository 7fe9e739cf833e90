"""`regime=noisy_student` (Xie et al. 2020): rounds of teacher -> pseudo-labels -> noised, equal-or-larger student.

Round 0 trains the first teacher on the labeled set, unless regime.teacher is given. Each round
k = 1..regime.rounds labels the unlabeled pool with the teacher (eval mode, no augmentation; soft
labels by default), trains student regime.students[k-1] on labeled + pseudo-labeled images with
noise (the aug option regime.noise_aug, model.dropout, model.drop_path), and hands the student on
as the next teacher. Each round is a complete run folder round_k/ inside the run folder.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any, List, Optional

from omegaconf import OmegaConf

from cvrun.config import option_values, path_field, typed_option
from cvrun.engine.rundir import RunFolder, logging_to
from cvrun.errors import UserError, require
from cvrun.models import MODELS
from cvrun.regimes.base import REGIMES, Regime, RegimeConfig
from cvrun.regimes.pseudo_label import PseudoLabelConfig
from cvrun.regimes.scratch import ScratchConfig
from cvrun.regimes.teacher import check_teacher

log = logging.getLogger("cvrun")


@dataclass
class NoisyStudentConfig(RegimeConfig):
    name: str = "noisy_student"
    teacher: Optional[str] = path_field()  # null: round_0/ trains the first teacher on the labeled set
    rounds: int = 2
    students: List[str] = field(default_factory=list)  # one model per round; empty: model.name every round
    noise_aug: str = "randaug"  # the aug option used as input noise
    # Each round's pseudo_label settings.
    threshold: float = 0.0
    soft: bool = True
    unlabeled_weight: float = 1.0
    balance: bool = False

    def check(self) -> None:
        require(self.rounds >= 1, f"regime.rounds must be >= 1, got {self.rounds}")
        require(0 <= self.threshold <= 1, f"regime.threshold (confidence cut) must be in [0, 1], got {self.threshold}")
        require(self.unlabeled_weight >= 0, f"regime.unlabeled_weight must be >= 0, got {self.unlabeled_weight}")


@REGIMES.register("noisy_student")
class NoisyStudent(Regime):
    config = NoisyStudentConfig
    mixes = False
    no_class_weights = "its students train as pseudo_label runs, whose loss weighs images by kind"
    not_distributed = "it runs several training runs in turn"
    not_resumable = "resume the round folder that stopped, then start the later rounds anew"
    no_weights = "its weights are in its rounds; evaluate one of them, e.g. cvrun eval {run_dir}/round_1"
    result_columns = ("pseudo_label_acc1", "pseudo_labels_kept")

    @classmethod
    def check_before_run(cls, cfg: Any) -> None:
        super().check_before_run(cfg)
        student_models(cfg)
        noise_aug(cfg.regime.noise_aug)
        if cfg.regime.teacher is not None:
            check_teacher(cfg)

    def start(self) -> dict:
        r = self.cfg.regime
        students = student_models(self.cfg)
        noise = noise_aug(r.noise_aug)
        rounds: list[dict] = []

        def run_rounds(summary: dict[str, Any]) -> None:
            teacher = r.teacher
            if teacher is None:
                first = self.run_round(self.stage_config(self.cfg.model.name, OmegaConf.structured(ScratchConfig()),
                                                         self.cfg.aug), "round_0")
                rounds.append(round_entry(0, self.cfg.model.name, first))
                teacher = str(self.folder.path / "round_0")
            for k, student in enumerate(students, start=1):
                # A round is a pseudo_label run of the student, with the noise as its aug: its config.yaml
                # reproduces that round alone.
                regime = OmegaConf.structured(PseudoLabelConfig(teacher=teacher, threshold=r.threshold, soft=r.soft,
                                                                unlabeled_weight=r.unlabeled_weight, balance=r.balance))
                result = self.run_round(self.stage_config(student, regime, noise), f"round_{k}")
                rounds.append(round_entry(k, student, result))
                log.info("noisy_student round %d: %s student, test top-1 %.2f%%", k, student, result["test_acc1"])
                teacher = str(self.folder.path / f"round_{k}")
            log_round_table(rounds)
            # The run's result is the last student's (every summary key of a single run), plus the rounds.
            last = {key: value for key, value in result.items() if key not in ("status", "reason", "wall_seconds")}
            summary.update(last, rounds=rounds, model=rounds[-1]["model"])

        # The rounds record their own data; the top summary takes the last round's keys at the end.
        return self.trainer.record(0, {"result_columns": list(self.result_columns)}, run_rounds)

    def stage_config(self, model: str, regime: Any, aug: Any) -> Any:
        stage = copy.deepcopy(self.cfg)
        stage.model.name, stage.regime, stage.aug = model, regime, aug
        return stage

    def run_round(self, cfg: Any, name: str) -> dict:
        """One round as a complete run folder: config.yaml, train.log, metrics, checkpoints, summary."""
        stage = RunFolder(self.folder.path / name)
        stage.write_config(OmegaConf.to_yaml(cfg))
        callbacks = self.callbacks_for(cfg, stage) if self.callbacks_for is not None else []
        with logging_to(stage.path / "train.log"):
            log.info("run folder: %s", stage.path)
            return REGIMES.get(cfg.regime.name)(cfg, stage, callbacks, self.callbacks_for).start()


def student_models(cfg: Any) -> list[str]:
    """regime.students, one per round; empty means model.name in every round."""
    r = cfg.regime
    students = [str(name) for name in r.students] or [cfg.model.name] * r.rounds
    if len(students) != r.rounds:
        raise UserError(f"regime.students lists {len(students)} models but regime.rounds={r.rounds}; "
                        "give one student per round")
    unknown = [name for name in students if name not in MODELS]
    if unknown:
        raise UserError(f"regime.students: unknown model {', '.join(unknown)}; valid models: {', '.join(MODELS)}")
    return students


def noise_aug(name: str) -> Any:
    """The aug option regime.noise_aug, composed as `aug=<name>` would compose it."""
    try:
        values = option_values("aug", name)
    except UserError as err:
        raise UserError(f"regime.noise_aug: {err}") from None
    return typed_option("aug", values, "regime.noise_aug")


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
