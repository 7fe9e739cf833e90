"""What most regimes share: loaders for the splits, a standard training job, transfer helpers."""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import DataLoader

from cvrun.augment import build_train_transform
from cvrun.augment.mixers import build_batch_mixer
from cvrun.data.loaders import make_loader
from cvrun.data.samples import Samples
from cvrun.data.splits import DataSplits, build_splits
from cvrun.engine.trainer import Trainer, TrainingJob
from cvrun.errors import UserError
from cvrun.models import build_model
from cvrun.models.registry import Classifier

log = logging.getLogger("cvrun")


def trainer_data_model(cfg: Any, run: Any, head_layers: int | None = None) -> tuple[Trainer, DataSplits, Classifier]:
    """The trainer, the data splits and the model (with model.pretrained's weights) of a run.

    head_layers: the model's last linear layers that form its head (default regime.head_layers).
    """
    trainer = Trainer(cfg, run)
    data = build_splits(cfg.dataset)
    layers = cfg.regime.head_layers if head_layers is None else head_layers
    return trainer, data, build_model(cfg.model, data.num_classes, data.image_size, layers)


def eval_batch_size(cfg: Any) -> int:
    return cfg.trainer.eval_batch_size or 2 * cfg.trainer.batch_size


def plain_loader(cfg: Any, samples: Samples, image_size: int, device: torch.device,
                 shard: bool = False) -> DataLoader:
    """Un-augmented images in their stored order: evaluation, recorded outputs, cached features.

    shard: the trainer's validation and test sets, which each torchrun process scores a share of.
    """
    return make_loader(samples, image_size, eval_batch_size(cfg), train=False, seed=cfg.trainer.seed,
                       num_workers=cfg.trainer.num_workers, cuda=device.type == "cuda", shard=shard)


def standard_job(cfg: Any, data: DataSplits, model: Classifier, device: torch.device,
                 train_targets: torch.Tensor | None = None) -> TrainingJob:
    """Augmented labeled training set, plain validation and test sets, cross-entropy.

    `train_targets`: one target row per training image instead of its label.
    """
    tcfg = cfg.trainer
    train_loader = make_loader(data.train, data.image_size, tcfg.batch_size, train=True, seed=tcfg.seed,
                               transform=build_train_transform(cfg.aug, data.image_size, cfg.dataset.mean),
                               num_workers=tcfg.num_workers, cuda=device.type == "cuda",
                               targets=train_targets, shard=True)
    val_loader = (plain_loader(cfg, data.val, data.image_size, device, shard=True)
                  if data.val is not None and len(data.val) else None)
    return TrainingJob(model=model, train_loader=train_loader, val_loader=val_loader,
                       test_loader=plain_loader(cfg, data.test, data.image_size, device, shard=True),
                       class_names=data.class_names, image_size=data.image_size,
                       mean=list(cfg.dataset.mean), std=list(cfg.dataset.std),
                       batch_mixer=build_batch_mixer(cfg.aug, len(data.class_names)),
                       summary_extra=split_sizes(data), splits=data.record)


def split_sizes(data: DataSplits) -> dict[str, int]:
    return {"train_samples": len(data.train), "val_samples": 0 if data.val is None else len(data.val)}


def require_pretrained(cfg: Any, runs_only: bool = False) -> str:
    """model.pretrained of a transfer regime; a missing one is a user error."""
    source = cfg.model.pretrained
    kinds = "a run folder or checkpoint" if runs_only else "a run folder, a checkpoint or imagenet"
    if source is None or (runs_only and source == "imagenet"):
        got = "" if source is None else f", not {source}"
        raise UserError(f"regime={cfg.regime.name} needs model.pretrained ({kinds}) to start from{got}; "
                        f"e.g. model.pretrained=outputs/DATE/TIME_scratch_{cfg.model.name}")
    return source


def backbone_and_head_groups(model: Classifier, cfg: Any) -> list[dict]:
    """Two optimiser groups: the head (model.head_layers) at optim.lr, the rest at optim.lr x regime.backbone_lr_mult."""
    head = model.head_parameters()
    head_ids = {id(p) for p in head}
    rest = [p for p in model.parameters() if id(p) not in head_ids]
    return [{"params": rest, "lr": cfg.optim.lr * cfg.regime.backbone_lr_mult}, {"params": head, "lr": cfg.optim.lr}]


def head_first(model: Classifier, freeze_epochs: int,
               held_with_backbone: Sequence[torch.nn.Module] = ()) -> Callable[[int], None] | None:
    """regime.freeze_epochs: an epoch hook that trains the head alone for the first epochs.

    held_with_backbone: further modules without gradients while the backbone is frozen.
    """
    if freeze_epochs == 0:
        return None

    def epoch_start(epoch: int) -> None:
        frozen = epoch < freeze_epochs
        if frozen != model.backbone_frozen:
            log.info("epoch %d: backbone %s", epoch + 1, "frozen, head alone trains" if frozen else "unfrozen")
        model.freeze_backbone(frozen)
        for module in held_with_backbone:
            module.requires_grad_(not frozen)
    return epoch_start


def refuse_mixing(cfg: Any) -> None:
    """Regimes whose targets are per-image rows (recorded outputs, pseudo-labels) cannot mix images."""
    if cfg.aug.mix:
        raise UserError(f"regime={cfg.regime.name} cannot mix images (aug.mix={cfg.aug.mix}): its targets "
                        "belong to single images; use aug.mix=null")
