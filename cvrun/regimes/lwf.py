"""`regime=lwf`: Learning without Forgetting (Li & Hoiem 2016).

The pretrained run's head stays as the old head and a new head learns the
new task. Before training, the old model's outputs on the new task's
(un-augmented) training images are recorded; the loss is cross-entropy on
the new head plus regime.lambda_old x the softened KL divergence (no T^2 factor, as in the paper) between the old
head's current outputs and the recorded ones. At the end the old head is
scored on the old task's test split (`old_task_acc1`).
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
import torch.nn.functional as F

from cvrun.data.splits import build_splits
from cvrun.engine.evaluate import Normalize, evaluate, predict
from cvrun.engine.losses import soft_kl
from cvrun.engine.rundir import RunFolder
from cvrun.engine.trainer import Trainer
from cvrun.models.pretrained import SourceRun, load_source_run
from cvrun.models.registry import Classifier
from cvrun.regimes import register_regime
from cvrun.regimes.common import (backbone_and_head_groups, head_first, log, plain_loader, refuse_mixing,
                                  require_pretrained, standard_job, trainer_data_model)


@register_regime("lwf")
def lwf(cfg: Any, run: RunFolder) -> dict:
    source = load_source_run(require_pretrained(cfg, runs_only=True))
    refuse_mixing(cfg)
    trainer, data, model = trainer_data_model(cfg, run)
    normalize = Normalize(list(cfg.dataset.mean), list(cfg.dataset.std), trainer.device)
    old_model = source.model.to(trainer.device)
    recorded, labels = predict(old_model, plain_loader(cfg, data.train, data.image_size, trainer.device),
                               normalize, trainer.dtype)
    score_old_task = old_task_scorer(source, cfg, trainer)
    old_task_before = score_old_task(old_model)
    log.info("lwf: recorded the old head's outputs on %d images; old task (%s) top-1 before: %.2f%%",
             len(labels), ", ".join(source.class_names), old_task_before)
    # Each target row: the new task's one-hot label, then the recorded old-task logits.
    targets = torch.cat([F.one_hot(labels, data.num_classes).float(), recorded], dim=1)
    old_head = copy.deepcopy(source.model.head)
    job = standard_job(cfg, data, model, trainer.device, train_targets=targets)
    job.loss_fn = lwf_loss(model, old_head, data.num_classes, cfg)
    job.param_groups = backbone_and_head_groups(model, cfg, head_extra=[old_head])
    job.epoch_start = head_first(model, cfg.regime.freeze_epochs)
    job.extra_modules = {"old_head": old_head}
    summary = trainer.fit(job)
    old_task_model = Classifier(model.backbone, model.num_features, len(source.class_names))
    old_task_model.head = old_head  # the trained backbone under the trained old head
    summary.update(old_task_acc1=round(score_old_task(old_task_model), 2),
                   old_task_acc1_before=round(old_task_before, 2), old_task_classes=source.class_names)
    run.write_summary(summary)
    log.info("lwf: old task top-1 %.2f%% after training (%.2f%% before)", summary["old_task_acc1"], old_task_before)
    return summary


def lwf_loss(model: Classifier, old_head: torch.nn.Module, num_classes: int, cfg: Any):
    """Cross-entropy on the new head + lambda_old x distillation of the old head towards its recorded outputs."""
    lambda_old, temperature = cfg.regime.lambda_old, cfg.regime.temperature
    label_smoothing = cfg.trainer.label_smoothing
    features: dict[str, torch.Tensor] = {}
    # The trainer's loss sees the new head's logits; the backbone's output of the same forward
    # pass is caught here so that the old head runs on it without a second backbone pass.
    model.backbone.register_forward_hook(lambda module, inputs, output: features.__setitem__("last", output))

    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        new_task = F.cross_entropy(logits, targets[:, :num_classes], label_smoothing=label_smoothing)
        if lambda_old == 0:  # the forgetting baseline: the old head is kept but never updated
            return new_task
        old_logits = old_head(features["last"]).float()
        return new_task + lambda_old * soft_kl(old_logits, targets[:, num_classes:], temperature)
    return loss


def old_task_scorer(source: SourceRun, cfg: Any, trainer: Trainer) -> Callable[[Classifier], float]:
    """Top-1 of a model on the test split of the task the source run was trained on (split read once)."""
    old = build_splits(source.cfg.dataset)
    normalize = Normalize(list(source.cfg.dataset.mean), list(source.cfg.dataset.std), trainer.device)
    loader = plain_loader(cfg, old.test, old.image_size, trainer.device)

    def score(model: Classifier) -> float:
        return evaluate(model.to(trainer.device), loader, normalize, trainer.dtype)["acc1"]
    return score
