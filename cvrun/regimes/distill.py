"""`regime=distill` (Hinton et al. 2015): the student matches the teacher's softened outputs.

loss = (1 - alpha) x CE(student, label) + alpha x T^2 x KL(softmax(teacher / T) || softmax(student / T)).
The teacher sees exactly the augmented batch the student sees. Images of the unlabeled pool (with
regime.use_unlabeled) carry no label and train on the distillation term alone.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F

from cvrun.data.samples import HIDDEN, Samples
from cvrun.engine.losses import distillation_loss
from cvrun.engine.rundir import RunFolder
from cvrun.regimes import register_regime
from cvrun.regimes.common import log, refuse_mixing, standard_job, trainer_data_model
from cvrun.regimes.teacher import Teacher, load_teacher


@register_regime("distill")
def distill(cfg: Any, run: RunFolder) -> dict:
    refuse_mixing(cfg)
    trainer, data, model = trainer_data_model(cfg, run)
    teacher = load_teacher(cfg, data, trainer.device)
    train = data.train
    if cfg.regime.use_unlabeled and data.unlabeled is not None and len(data.unlabeled):
        train = Samples.concat(data.train, data.unlabeled, data.image_size)
        log.info("distill: %d labeled + %d unlabeled images (distillation term alone)",
                 len(data.train), len(data.unlabeled))
    job = standard_job(cfg, replace(data, train=train), model, trainer.device)
    job.loss_fn = distill_loss(model, teacher, cfg)
    job.summary_extra.update(labeled_samples=len(data.train), unlabeled_samples=len(train) - len(data.train))
    return trainer.fit(job)


def distill_loss(model: torch.nn.Module, teacher: Teacher, cfg: Any):
    alpha, temperature = cfg.regime.alpha, cfg.regime.temperature
    batch: dict[str, torch.Tensor] = {}
    # The trainer's loss sees the student's logits; its input batch is caught here, so the
    # teacher runs on exactly the (augmented, normalised) images the student just saw.
    model.register_forward_pre_hook(lambda module, args: batch.__setitem__("images", args[0]))

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        teacher_logits = teacher(batch["images"]).float()
        known = labels != HIDDEN
        # Mean over the labeled rows, with no host sync to count them (none labeled: the term is 0).
        hard = F.cross_entropy(logits, labels, ignore_index=HIDDEN, reduction="sum") / known.sum().clamp(min=1)
        return (1 - alpha) * hard + alpha * distillation_loss(logits, teacher_logits, temperature)
    return loss
