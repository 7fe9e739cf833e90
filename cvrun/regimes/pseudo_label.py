"""`regime=pseudo_label` (Lee 2013, offline): the teacher labels the unlabeled pool once; the student
trains on the labeled images plus the confidently pseudo-labeled ones."""

from __future__ import annotations

from typing import Any

from cvrun.engine.rundir import RunFolder
from cvrun.regimes import register_regime
from cvrun.regimes.common import trainer_data_model
from cvrun.regimes.teacher import load_teacher, pseudo_labeled_job


@register_regime("pseudo_label")
def pseudo_label(cfg: Any, run: RunFolder) -> dict:
    trainer, data, model = trainer_data_model(cfg, run)
    teacher = load_teacher(cfg, data, trainer.device)
    return trainer.fit(pseudo_labeled_job(cfg, data, model, teacher, trainer.device, trainer.dtype))
