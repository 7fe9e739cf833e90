"""What most regimes share: loaders for the splits and a standard training job."""

from __future__ import annotations

from typing import Any

import torch

from cvrun.augment import build_train_transform
from cvrun.augment.mixers import build_batch_mixer
from cvrun.data.loaders import make_loader
from cvrun.data.splits import DataSplits
from cvrun.engine.trainer import TrainingJob
from cvrun.models.registry import Classifier


def standard_job(cfg: Any, data: DataSplits, model: Classifier, device: torch.device) -> TrainingJob:
    """Augmented labeled training set, plain validation and test sets, cross-entropy."""
    tcfg = cfg.trainer
    eval_batch = tcfg.eval_batch_size or 2 * tcfg.batch_size
    common = {"image_size": data.image_size, "seed": tcfg.seed, "num_workers": tcfg.num_workers,
              "pin_memory": device.type == "cuda"}
    train_loader = make_loader(data.train, batch_size=tcfg.batch_size, train=True,
                               transform=build_train_transform(cfg.aug, data.image_size, cfg.dataset.mean), **common)
    val_loader = (make_loader(data.val, batch_size=eval_batch, train=False, **common)
                  if data.val is not None and len(data.val) else None)
    test_loader = make_loader(data.test, batch_size=eval_batch, train=False, **common)
    return TrainingJob(model=model, train_loader=train_loader, val_loader=val_loader, test_loader=test_loader,
                       class_names=data.class_names, image_size=data.image_size,
                       mean=list(cfg.dataset.mean), std=list(cfg.dataset.std),
                       batch_mixer=build_batch_mixer(cfg.aug, len(data.class_names)),
                       summary_extra={"train_samples": len(data.train),
                                      "val_samples": 0 if data.val is None else len(data.val)})
