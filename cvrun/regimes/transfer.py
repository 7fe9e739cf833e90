"""What the transfer regimes share: a head at its own learning rate, and training the head alone first."""

from __future__ import annotations

import logging
from typing import Any, Sequence

from torch import nn

from cvrun.models.registry import Classifier

log = logging.getLogger("cvrun")


def backbone_and_head_groups(model: Classifier, lr: float, backbone_lr_mult: float,
                             beside_head: Sequence[nn.Module] = ()) -> list[dict[str, Any]]:
    """Two optimiser groups: the head (model.head_layers, and `beside_head`) at lr, the rest at lr x backbone_lr_mult."""
    head = [*model.head_parameters(), *(p for module in beside_head for p in module.parameters())]
    head_ids = {id(p) for p in head}
    rest = [p for p in model.parameters() if id(p) not in head_ids]
    return [{"params": rest, "lr": lr * backbone_lr_mult}, {"params": head, "lr": lr}]


def head_first(model: Classifier, epoch: int, freeze_epochs: int, held_with_backbone: Sequence[nn.Module] = ()) -> None:
    """regime.freeze_epochs: the head alone trains for the first epochs (held_with_backbone: further modules
    held while the backbone is)."""
    if freeze_epochs == 0:
        return
    frozen = epoch < freeze_epochs
    if frozen != model.backbone_frozen:
        log.info("epoch %d: backbone %s", epoch + 1, "frozen, head alone trains" if frozen else "unfrozen")
    model.freeze_backbone(frozen)
    for module in held_with_backbone:
        module.requires_grad_(not frozen)
