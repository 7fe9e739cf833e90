"""What the consistency regimes share: a labeled loader, and the unlabeled pool in two views at
regime.mu times the labeled batch; the pool's hidden labels travel for scoring alone.

Steps, not passes, set their pace (the labeled set is small, the pool large): an epoch is
trainer.steps_per_epoch steps, and each loader starts a new seeded pass when it runs out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cvrun.data.splits import build_splits
from cvrun.errors import require
from cvrun.regimes.base import Regime, RegimeConfig
from cvrun.regimes.teacher import check_pool_before_run, require_pool


@dataclass
class ConsistencyConfig(RegimeConfig):
    mu: int = 7  # unlabeled images per labeled image in a step
    lambda_u: float = 1.0  # weight of the unlabeled term
    threshold: float = 0.95  # confidence a pseudo-label needs (mean_teacher: only reported, as the mask rate)

    def check(self) -> None:
        require(self.mu >= 1, f"regime.mu (unlabeled images per labeled one) must be >= 1, got {self.mu}")
        require(self.lambda_u >= 0, f"regime.lambda_u must be >= 0, got {self.lambda_u}")
        require(0 <= self.threshold <= 1, f"regime.threshold (confidence cut) must be in [0, 1], got {self.threshold}")


def pseudo_label_sums(confident: torch.Tensor, pseudo: torch.Tensor, truth: torch.Tensor,
                      used: torch.Tensor) -> dict[str, torch.Tensor]:
    """Step sums for the mask rate (confident images) and the pseudo-labels' accuracy (on the `used` images
    whose hidden label is known): scores only, never a loss."""
    known = used & (truth >= 0)
    return {"confident": confident.sum(), "unlabeled": torch.tensor(len(confident), device=confident.device),
            "pseudo_correct": (known & (pseudo == truth)).sum(), "pseudo_known": known.sum()}


class ConsistencyRegime(Regime):
    result_columns = ("mask_rate", "pseudo_label_acc1")
    mixes = False  # pseudo-labels belong to single images

    @classmethod
    def check_before_run(cls, cfg: Any) -> None:
        super().check_before_run(cfg)
        check_pool_before_run(cfg)

    def prepare(self) -> None:
        data = self.data = build_splits(self.cfg.dataset)
        self.model = self.build_model()
        self.pool = require_pool(data, self.cfg.regime.name)
        self.setup_loaders(data)
        extras = {"true_label": torch.as_tensor(self.pool.true_labels), "index": torch.arange(len(self.pool))}
        self.train_loaders["unlabeled"] = self.augmented_loader(
            self.pool, extras, aug=(self.cfg.aug, self.second_view()),
            batch_size=self.cfg.regime.mu * self.cfg.trainer.batch_size)
        self.summary_extra.update(labeled_samples=len(data.train), unlabeled_samples=len(self.pool))
        self.steps_per_epoch = self.cfg.trainer.steps_per_epoch or len(self.train_loaders["labeled"])

    def second_view(self) -> Any:
        """The aug option of the unlabeled images' second view (the first is the run's own, the weak one)."""
        return self.cfg.aug

    def epoch_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        known = sums["pseudo_known"] > 0
        return {**super().epoch_metrics(sums), "mask_rate": 100.0 * sums["confident"] / max(sums["unlabeled"], 1),
                "pseudo_label_acc1": 100.0 * sums["pseudo_correct"] / sums["pseudo_known"] if known else None}

    def finished(self, summary: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The last epoch's mask rate and pseudo-label accuracy."""
        last = rows[-1] if rows else {}
        return {key: None if last.get(key) is None else round(last[key], 2) for key in self.result_columns}


def ramp_up(progress: float) -> float:
    """The sigmoid ramp-up of Laine & Aila and Tarvainen & Valpola: exp(-5 (1 - t)^2), 1 from t = 1 on."""
    t = float(np.clip(progress, 0.0, 1.0))
    return float(np.exp(-5.0 * (1.0 - t) ** 2))
