"""`regime=lwf`: Learning without Forgetting (Li & Hoiem 2016).

As in the paper, each task owns only its output layer (theta_o, theta_n); everything below it is
shared (theta_s), including a hidden head layer such as LeNet-5's F6, which starts from the source
run. Before training, the old model's outputs on the new task's (un-augmented) training images are
recorded; the loss is cross-entropy on the new output plus regime.lambda_old x the softened KL
divergence (no T^2 factor, as in the paper) between the old output layer's current outputs and the
recorded ones. At the end the old output layer, on the trained shared layers, is scored on the old
task's test split (`old_task_acc1`).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvrun.data.splits import build_splits
from cvrun.engine.evaluate import Normalize, evaluate, predict
from cvrun.engine.losses import soft_kl
from cvrun.errors import require
from cvrun.models.pretrained import load_source_run
from cvrun.models.registry import Classifier
from cvrun.regimes.base import REGIMES, Regime, RegimeConfig, accuracy_sums
from cvrun.regimes.transfer import backbone_and_head_groups, head_first

log = logging.getLogger("cvrun")


@dataclass
class LwfConfig(RegimeConfig):
    name: str = "lwf"
    lambda_old: float = 1.0  # weight of the term that keeps the old output (0: plain fine-tuning, old output kept)
    temperature: float = 2.0
    backbone_lr_mult: float = 1.0  # shared layers at optim.lr x this; the paper trains all at one rate
    freeze_epochs: int = 0  # the paper's warm-up: epochs that train the new output layer alone

    def check(self) -> None:
        require(self.lambda_old >= 0, f"regime.lambda_old must be >= 0, got {self.lambda_old}")
        require(self.temperature > 0, f"regime.temperature must be > 0, got {self.temperature}")
        require(self.backbone_lr_mult >= 0, f"regime.backbone_lr_mult must be >= 0, got {self.backbone_lr_mult}")
        require(self.freeze_epochs >= 0, f"regime.freeze_epochs must be >= 0, got {self.freeze_epochs}")


@REGIMES.register("lwf")
class Lwf(Regime):
    config = LwfConfig
    mixes = False  # the recorded outputs belong to single images
    no_class_weights = "its loss is cross-entropy against one-hot targets over the old and new classes"
    result_columns = ("old_task_acc1",)

    def prepare(self) -> None:
        # The old output takes no gradient at lambda_old=0, and the warm-up holds the shared layers.
        self.unused_parameters = self.cfg.regime.lambda_old == 0 or self.cfg.regime.freeze_epochs > 0
        source = load_source_run(self.require_pretrained(runs_only=True))
        self.data = build_splits(self.cfg.dataset)
        self.model = self.build_model(head_layers=1)  # F6 (any hidden head layer) comes from the source
        normalize = Normalize(list(self.cfg.dataset.mean), list(self.cfg.dataset.std), self.device)
        old_model = source.model.to(self.device)
        recorded, labels = predict(old_model, self.plain_loader(self.data.train), normalize, self.dtype)
        self.score_old_task = old_task_scorer(self, source)
        self.old_task_before = self.score_old_task(old_model)
        log.info("lwf: every layer below the output layer is shared and starts from the source; recorded the old "
                 "outputs on %d images; old task (%s) top-1 before: %.2f%%",
                 len(labels), ", ".join(source.class_names), self.old_task_before)
        self.old_output = copy.deepcopy(source.model.output_layer)
        self.old_task_classes = source.class_names
        self.setup_loaders(self.data, extras={"old_logits": recorded})

    @property
    def trained(self) -> dict[str, nn.Module]:
        return {"model": self.model, "old_output": self.old_output}

    def param_groups(self) -> list[dict[str, Any]]:
        """Shared layers at optim.lr x regime.backbone_lr_mult, the two output layers at optim.lr."""
        return backbone_and_head_groups(self.model, self.cfg.optim.lr, self.cfg.regime.backbone_lr_mult,
                                        beside_head=[self.old_output])

    def epoch_start(self, epoch: int) -> None:
        # The paper's warm-up: the new output layer alone; the shared layers and the old output held.
        head_first(self.model, epoch, self.cfg.regime.freeze_epochs,
                   held_with_backbone=[self.model.hidden_layers, self.old_output])

    def training_step(self, trained: nn.ModuleDict, batches: dict[str, Any],
                      ema: nn.Module | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross-entropy on the new output + lambda_old x distillation of the old output towards its recorded values,
        both output layers on the same shared features (one pass)."""
        images, targets = batches["labeled"]
        model, r = trained["model"], self.cfg.regime
        features = model.penultimate(self.normalize(images))
        logits = model.output_layer(features)
        labels = targets["label"]
        one_hot = F.one_hot(labels, self.data.num_classes).float()
        loss = F.cross_entropy(logits.float(), one_hot, label_smoothing=self.cfg.trainer.label_smoothing)
        if r.lambda_old != 0:  # 0: the forgetting baseline, the old output kept but never updated
            loss = loss + r.lambda_old * soft_kl(trained["old_output"](features).float(), targets["old_logits"],
                                                 r.temperature)
        return loss, accuracy_sums(logits, labels)

    def finished(self, summary: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The old output layer, on the trained shared layers, scored on the old task."""
        old_task_model = copy.deepcopy(self.model)
        old_task_model.replace_output_layer(self.old_output)
        after = self.score_old_task(old_task_model)
        log.info("lwf: old task top-1 %.2f%% after training (%.2f%% before)", after, self.old_task_before)
        return {"old_task_acc1": round(after, 2), "old_task_acc1_before": round(self.old_task_before, 2),
                "old_task_classes": self.old_task_classes}


def old_task_scorer(regime: Regime, source: Any):
    """Top-1 of a model on the test split of the task the source run was trained on (split read once)."""
    old = build_splits(source.cfg.dataset)
    normalize = Normalize(list(source.cfg.dataset.mean), list(source.cfg.dataset.std), regime.device)
    loader = regime.plain_loader(old.test, image_size=old.image_size)

    def score(model: Classifier) -> float:
        return evaluate(model.to(regime.device), loader, normalize, regime.dtype)["acc1"]
    return score
