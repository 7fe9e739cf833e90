"""`regime=scratch`: train the model from its initial weights on the labeled set."""

from __future__ import annotations

from typing import Any

from cvrun.engine.rundir import RunFolder
from cvrun.regimes import register_regime
from cvrun.regimes.common import standard_job, trainer_data_model


@register_regime("scratch")
def scratch(cfg: Any, run: RunFolder) -> dict:
    trainer, data, model = trainer_data_model(cfg, run)
    return trainer.fit(standard_job(cfg, data, model, trainer.device))
