"""`regime=lwf`: Learning without Forgetting (Li & Hoiem 2016).

As in the paper, each task owns only its output layer (theta_o, theta_n); everything
below it is shared (theta_s), including a hidden head layer such as LeNet-5's F6,
which starts from the source run. Before training, the old model's outputs on the
new task's (un-augmented) training images are recorded; the loss is cross-entropy on
the new output plus regime.lambda_old x the softened KL divergence (no T^2 factor, as
in the paper) between the old output layer's current outputs and the recorded ones.
At the end the old output layer, on the trained shared layers, is scored on the old
task's test split (`old_task_acc1`).
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
from cvrun.regimes.common import (head_first, log, plain_loader, refuse_mixing, require_pretrained, standard_job,
                                  trainer_data_model)


@register_regime("lwf")
def lwf(cfg: Any, run: RunFolder) -> dict:
    source = load_source_run(require_pretrained(cfg, runs_only=True))
    refuse_mixing(cfg)
    trainer, data, model = trainer_data_model(cfg, run, head_layers=1)  # F6 comes from the source
    normalize = Normalize(list(cfg.dataset.mean), list(cfg.dataset.std), trainer.device)
    old_model = source.model.to(trainer.device)
    recorded, labels = predict(old_model, plain_loader(cfg, data.train, data.image_size, trainer.device),
                               normalize, trainer.dtype)
    score_old_task = old_task_scorer(source, cfg, trainer)
    old_task_before = score_old_task(old_model)
    log.info("lwf: every layer below the output layer is shared and starts from the source; recorded the old "
             "outputs on %d images; old task (%s) top-1 before: %.2f%%",
             len(labels), ", ".join(source.class_names), old_task_before)
    # Each target row: the new task's one-hot label, then the recorded old-task logits.
    targets = torch.cat([F.one_hot(labels, data.num_classes).float(), recorded], dim=1)
    old_output = copy.deepcopy(source.model.output_layer)
    job = standard_job(cfg, data, model, trainer.device, train_targets=targets)
    job.loss_fn = lwf_loss(model, old_output, data.num_classes, cfg)
    job.param_groups = shared_and_output_groups(model, old_output, cfg)
    # The paper's warm-up: the new output layer alone, shared layers and old output held.
    job.epoch_start = head_first(model, cfg.regime.freeze_epochs, held_with_backbone=[model.hidden_layers, old_output])
    job.extra_modules = {"old_output": old_output}
    summary = trainer.fit(job)
    old_task_model = copy.deepcopy(model)
    old_task_model.replace_output_layer(old_output)  # the trained shared layers under the trained old output
    summary.update(old_task_acc1=round(score_old_task(old_task_model), 2),
                   old_task_acc1_before=round(old_task_before, 2), old_task_classes=source.class_names)
    run.write_summary(summary)
    log.info("lwf: old task top-1 %.2f%% after training (%.2f%% before)", summary["old_task_acc1"], old_task_before)
    return summary


def shared_and_output_groups(model: Classifier, old_output: torch.nn.Module, cfg: Any) -> list[dict]:
    """Shared layers at optim.lr x regime.backbone_lr_mult, the two output layers at optim.lr."""
    outputs = [*model.output_layer.parameters(), *old_output.parameters()]
    output_ids = {id(p) for p in outputs}
    shared = [p for p in model.parameters() if id(p) not in output_ids]
    return [{"params": shared, "lr": cfg.optim.lr * cfg.regime.backbone_lr_mult},
            {"params": outputs, "lr": cfg.optim.lr}]


def lwf_loss(model: Classifier, old_output: torch.nn.Module, num_classes: int, cfg: Any):
    """Cross-entropy on the new output + lambda_old x distillation of the old output towards its recorded values."""
    lambda_old, temperature = cfg.regime.lambda_old, cfg.regime.temperature
    label_smoothing = cfg.trainer.label_smoothing
    features: dict[str, torch.Tensor] = {}
    # The trainer's loss sees the new output's logits; the shared features that the same forward
    # pass feeds the new output layer are caught here, so the old one runs without a second pass.
    model.output_layer.register_forward_pre_hook(lambda module, inputs: features.__setitem__("shared", inputs[0]))

    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        new_task = F.cross_entropy(logits, targets[:, :num_classes], label_smoothing=label_smoothing)
        if lambda_old == 0:  # the forgetting baseline: the old output is kept but never updated
            return new_task
        old_logits = old_output(features["shared"]).float()
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
