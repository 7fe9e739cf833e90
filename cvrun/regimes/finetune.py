"""`regime=finetune`: the whole pretrained model trains, the backbone at a lower learning rate."""

from __future__ import annotations

from typing import Any

from cvrun.engine.rundir import RunFolder
from cvrun.regimes import register_regime
from cvrun.regimes.common import (backbone_and_head_groups, head_first, require_pretrained, standard_job,
                                  trainer_data_model)


@register_regime("finetune")
def finetune(cfg: Any, run: RunFolder) -> dict:
    require_pretrained(cfg)
    trainer, data, model = trainer_data_model(cfg, run)
    job = standard_job(cfg, data, model, trainer.device)
    job.param_groups = backbone_and_head_groups(model, cfg)
    job.epoch_start = head_first(model, cfg.regime.freeze_epochs)
    return trainer.fit(job)
