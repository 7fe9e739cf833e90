"""Pretrained weights: torchvision's ImageNet weights, a cvrun run folder, or a checkpoint file.

A run folder or checkpoint carries its training config, so the source model
is rebuilt exactly as it was trained before its weights are read. Weights
then move into the new model tensor by tensor: a head with another class
count is left newly initialised, and train.log says what was loaded,
skipped and new.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cvrun.errors import UserError
from cvrun.models.registry import MODELS, Classifier, create_model

log = logging.getLogger("cvrun")


@dataclass
class SourceRun:
    """A trained model rebuilt from a run folder or checkpoint, with the config it was trained with."""

    reference: str
    cfg: Any  # the source's validated TrainConfig
    model: Classifier
    class_names: list[str]


def load_source_run(reference: str, key: str = "model.pretrained") -> SourceRun:
    """Rebuild the model of a run folder (config.yaml + checkpoints/best.pt) or of a checkpoint file."""
    from cvrun.config import load_run_config
    from cvrun.io import load_checkpoint

    path = Path(reference).expanduser()
    if path.is_dir():
        if not (path / "config.yaml").is_file():
            raise UserError(f"{key}={reference} is a folder but not a cvrun run folder (no config.yaml); "
                            "pass a run folder such as outputs/YYYY-MM-DD/HH-MM-SS_scratch_resnet18")
        if not (path / "checkpoints" / "best.pt").is_file():
            raise UserError(f"{key}={reference} has no checkpoints/best.pt (the run ended before its "
                            "first epoch); pass a run that finished at least one epoch")
        cfg = load_run_config(path / "config.yaml")
        state = load_checkpoint(path / "checkpoints" / "best.pt")
    elif path.is_file():
        state = load_checkpoint(path)
        if not state.get("config"):
            raise UserError(f"{key}={reference} holds no training config; pass a cvrun checkpoint or run folder")
        cfg = load_run_config(state["config"])
    else:
        raise UserError(f"{key}={reference} does not exist; pass a run folder, a checkpoint file"
                        + (" or imagenet" if key == "model.pretrained" else ""))
    return SourceRun(str(path), cfg, rebuild_model(cfg, state), [str(name) for name in state["class_names"]])


def rebuild_model(cfg: Any, state: dict[str, Any]) -> Classifier:
    """The model a checkpoint was trained as (its config's model group), holding its evaluated weights (EMA if kept)."""
    m = cfg.model
    model = create_model(m.name, len(state["class_names"]), int(state["image_size"]), m.small_input, m.dropout,
                         m.drop_path, m.hidden)
    model.load_state_dict(state["ema"] if state.get("ema") else state["model"])
    return model


def imagenet_state_dict(name: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights for `name`, downloaded into (or read from) torch's hub folder."""
    import torchvision.models
    from torch.hub import get_dir

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (KeyError, ValueError):
        with_weights = sorted(set(torchvision.models.list_models()) & set(MODELS))
        raise UserError(f"model.pretrained=imagenet: torchvision has no ImageNet weights for {name}; "
                        f"use one of {', '.join(with_weights)}, or a cvrun run folder") from None
    cached = Path(get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        return weights.get_state_dict(progress=False)
    except OSError as err:  # URLError, timeouts, no route: all OSErrors
        raise UserError(f"model.pretrained=imagenet: cannot download {weights.url} ({err}); without "
                        f"internet, copy that file to {cached}") from None


def imagenet_as_classifier(model: Classifier, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename torchvision's keys to the Classifier's: backbone.<key>, and the cut-off last layer to head.*."""
    own = model.state_dict()
    # Every architecture replaced torchvision's last linear layer by an Identity and moved it to
    # `head`: its weight and bias are the only keys with no backbone counterpart.
    return {f"backbone.{key}" if f"backbone.{key}" in own else f"head.{key.rsplit('.', 1)[1]}": tensor
            for key, tensor in state.items()}


def transfer(model: Classifier, state: dict[str, torch.Tensor], source: str, strict_backbone: bool) -> dict:
    """Copy every tensor whose name and shape match; report loaded, skipped and newly initialised.

    `strict_backbone`: a backbone tensor that does not fit is a user error (a run of the same
    architecture must fit); ImageNet weights instead skip what a small-input stem changed.
    """
    own = model.state_dict()
    head_names = {name for name, _ in model.head_modules()}

    def is_head(key: str) -> bool:
        return key.rsplit(".", 1)[0] in head_names

    # The head (model.head_layers linear layers) moves only as a whole: with another class count all of it
    # starts anew.
    head_fits = all(key in own and own[key].shape == tensor.shape for key, tensor in state.items() if is_head(key))
    loaded, skipped = [], []
    for key, tensor in state.items():
        if key in own and own[key].shape == tensor.shape and (head_fits or not is_head(key)):
            own[key] = tensor
            loaded.append(key)
        elif key in own and strict_backbone and not is_head(key):
            raise UserError(f"model.pretrained={source}: {key} has shape {tuple(tensor.shape)} there and "
                            f"{tuple(own[key].shape)} here; set model.small_input and dataset.image_size "
                            "as the source run had them")
        else:
            skipped.append(key)
    model.load_state_dict(own)
    new = [key for key in own if key not in loaded]
    log.info("pretrained weights from %s: loaded %d tensors; skipped %d (%s); newly initialised %d (%s)",
             source, len(loaded), len(skipped), _short(skipped), len(new), _short(new))
    return {"loaded": loaded, "skipped": skipped, "new": new}


def _short(keys: list[str], limit: int = 6) -> str:
    if not keys:
        return "none"
    return ", ".join(keys[:limit]) + (f", ... {len(keys) - limit} more" if len(keys) > limit else "")


def load_pretrained(model: Classifier, name: str, reference: str) -> dict:
    """Fill `model` (architecture `name`) from `model.pretrained`; returns the transfer report."""
    if reference == "imagenet":
        return transfer(model, imagenet_as_classifier(model, imagenet_state_dict(name)), "imagenet", False)
    source = load_source_run(reference)
    if source.cfg.model.name != name:
        raise UserError(f"model.pretrained={reference} is a {source.cfg.model.name}, but model={name}; "
                        f"use model={source.cfg.model.name} to start from it")
    return transfer(model, source.model.state_dict(), reference, True)
