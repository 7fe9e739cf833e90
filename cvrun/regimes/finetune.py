"""`regime=finetune`: the whole pretrained model trains, the backbone at a lower learning rate."""

from __future__ import annotations

from typing import Any

from cvrun.data.splits import build_splits
from cvrun.engine.rundir import RunFolder
from cvrun.engine.trainer import Trainer
from cvrun.models import build_model
from cvrun.regimes import register_regime
from cvrun.regimes.common import backbone_and_head_groups, head_first, require_pretrained, standard_job


@register_regime("finetune")
def finetune(cfg: Any, run: RunFolder) -> dict:
    require_pretrained(cfg)
    trainer = Trainer(cfg, run)
    data = build_splits(cfg.dataset)
    model = build_model(cfg.model, data.num_classes, data.image_size)
    job = standard_job(cfg, data, model, trainer.device)
    job.param_groups = backbone_and_head_groups(model, cfg)
    job.epoch_start = head_first(model, cfg.regime.freeze_epochs)
    return trainer.fit(job)
