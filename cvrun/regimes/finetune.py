"""`regime=finetune`: the whole pretrained model trains, the head at optim.lr and the rest slower."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cvrun.data.splits import build_splits
from cvrun.errors import require
from cvrun.regimes.base import REGIMES, Regime, RegimeConfig
from cvrun.regimes.transfer import backbone_and_head_groups, head_first


@dataclass
class FinetuneConfig(RegimeConfig):
    name: str = "finetune"
    head_layers: int = 1  # the model's last linear layers that form the new head, trained at optim.lr
    backbone_lr_mult: float = 0.1  # the rest at optim.lr x this
    freeze_epochs: int = 0  # the head alone trains for this many epochs first

    def check(self) -> None:
        require(self.head_layers >= 1,
                f"regime.head_layers must be >= 1 (1: the output layer alone), got {self.head_layers}")
        require(self.backbone_lr_mult >= 0, f"regime.backbone_lr_mult must be >= 0, got {self.backbone_lr_mult}")
        require(self.freeze_epochs >= 0, f"regime.freeze_epochs must be >= 0, got {self.freeze_epochs}")


@REGIMES.register("finetune")
class Finetune(Regime):
    config = FinetuneConfig

    def prepare(self) -> None:
        self.require_pretrained()
        self.unused_parameters = self.cfg.regime.freeze_epochs > 0
        self.data = build_splits(self.cfg.dataset)
        self.model = self.build_model(self.cfg.regime.head_layers)
        self.setup_loaders(self.data)

    def param_groups(self) -> list[dict[str, Any]]:
        return backbone_and_head_groups(self.model, self.cfg.optim.lr, self.cfg.regime.backbone_lr_mult)

    def epoch_start(self, epoch: int) -> None:
        head_first(self.model, epoch, self.cfg.regime.freeze_epochs)
