"""`regime=scratch`: train the model from its initial weights on the labeled set."""

from __future__ import annotations

from typing import Any

from cvrun.data.splits import build_splits
from cvrun.engine.rundir import RunFolder
from cvrun.engine.trainer import Trainer
from cvrun.models import build_model
from cvrun.regimes import register_regime
from cvrun.regimes.common import standard_job


@register_regime("scratch")
def scratch(cfg: Any, run: RunFolder) -> dict:
    trainer = Trainer(cfg, run)
    data = build_splits(cfg.dataset)
    model = build_model(cfg.model, data.num_classes, data.image_size)
    return trainer.fit(standard_job(cfg, data, model, trainer.device))
