"""Pretrained weights: torchvision's ImageNet weights, a cvrun run folder, or a checkpoint file.

A run folder or checkpoint carries its training config, so the source model
is rebuilt exactly as it was trained before its weights are read. Weights
then move into the new model tensor by tensor: a head with another class
count is left newly initialised, and train.log says what was loaded,
skipped and new.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from cvrun.errors import UserError
from cvrun.io import file_sha256
from cvrun.models.registry import MODELS, Classifier, create_model, own_keys
from cvrun.models.timm_models import (HUB, TimmClassifier, check_timm_pretrained, timm_state_dict, timm_weights,
                                      weights_in_folder)

log = logging.getLogger("cvrun")

TIMM = "timm"  # the model whose weights may also be timm's (cvrun/models/timm_models.py)


@dataclass
class SourceRun:
    """A trained model rebuilt from a run folder or checkpoint, with the config it was trained with."""

    reference: str
    cfg: Any  # the source's validated TrainConfig
    model: Classifier
    class_names: list[str]


@dataclass
class SourceFiles:
    """Where a source's weights are, and what its run folder says of itself (read without loading weights)."""

    checkpoint: Path
    config: Path | None  # a run folder's config.yaml; None for a checkpoint file (its config is inside)
    status: str | None  # the run's status ("running" while another process trains there); None for a file
    summary: dict[str, Any]


def run_status(folder: Path) -> tuple[str | None, dict[str, Any]]:
    """A run folder's status and summary.json; "running" while another process holds its training lock."""
    from cvrun.io import lock_holder

    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {}
    summary = summary if isinstance(summary, dict) else {}
    return ("running" if lock_holder(folder) else summary.get("status")), summary


def source_files(reference: str, key: str) -> SourceFiles:
    """The files of a run folder or checkpoint named by `key`; a source that cannot give weights is a
    UserError. Reads a listing and summary.json only, so it runs before the run folder is made."""
    if reference == HUB:
        raise UserError(f"{key}=hub names timm's download of model=timm's weights, which carry no cvrun training "
                        f"config; {key} takes a cvrun run folder or checkpoint here")
    path = Path(reference).expanduser()
    if path.is_file():
        return SourceFiles(path, None, None, {})
    if not path.is_dir():
        raise UserError(f"{key}={reference} does not exist; pass a run folder, a checkpoint file"
                        + (" or imagenet" if key == "model.pretrained" else ""))
    if not (path / "config.yaml").is_file():
        raise UserError(f"{key}={reference} is a folder but not a cvrun run folder (no config.yaml); "
                        "pass a run folder such as outputs/YYYY-MM-DD/HH-MM-SS_scratch_resnet18")
    status, summary = run_status(path)
    if status == "failed":
        raise UserError(f"{key}={reference} is a failed run ({summary.get('reason') or 'no reason recorded'}); "
                        "its weights are not a trained model: pass a run that completed")
    checkpoint = path / "checkpoints" / "best.pt"
    if not checkpoint.is_file():
        if status == "completed":
            raise UserError(f"{key}={reference} completed without checkpoints/best.pt (its regime, "
                            f"{source_regime(path)}, keeps no weights, or the file was removed); pass a run "
                            "folder that holds checkpoints/best.pt")
        if status == "running":
            raise UserError(f"{key}={reference} is still training and has no checkpoints/best.pt yet; wait until "
                            "it has finished its first epoch, or pass another run")
        raise UserError(f"{key}={reference} has no checkpoints/best.pt (the run ended before its "
                        "first epoch); pass a run that finished at least one epoch")
    return SourceFiles(checkpoint, path / "config.yaml", status, summary)


def source_regime(folder: Path) -> str:
    """The regime a run folder's config.yaml names, read as plain YAML (no validation)."""
    from omegaconf import OmegaConf

    try:
        return str(OmegaConf.select(OmegaConf.load(folder / "config.yaml"), "regime.name", default="?"))
    except Exception:  # noqa: BLE001 - an unreadable config only loses the name from a message
        return "?"


def source_record(reference: str, key: str) -> dict[str, Any]:
    """summary.json's note of a source: its run's status and its checkpoint's hash; a warning line in the
    log when the source's run did not complete."""
    prefix = key.split(".")[-1]
    if key == "model.pretrained" and reference == HUB:
        return {}  # timm's download: named by the config (model.arch), its file fetched when the model is built
    weights = weights_in_folder(Path(reference).expanduser()) if Path(reference).expanduser().is_dir() else None
    if key == "model.pretrained" and weights is not None:  # a folder of timm weights (a Hugging Face cache folder)
        return {f"{prefix}_status": None, f"{prefix}_sha256": file_sha256(weights)[:16]}
    files = source_files(reference, key)
    if files.status not in (None, "completed"):
        log.warning("%s=%s is a run whose status is %s: its best checkpoint so far is used", key, reference,
                    files.status)
    # The first 16 hex digits, as the split fingerprints: what `reproduce --check` compares to tell that a
    # source's weights changed.
    return {f"{prefix}_status": files.status, f"{prefix}_sha256": file_sha256(files.checkpoint)[:16]}


def load_source_run(reference: str, key: str = "model.pretrained") -> SourceRun:
    """Rebuild the model of a run folder (config.yaml + checkpoints/best.pt) or of a checkpoint file."""
    from cvrun.config import load_run_config
    from cvrun.io import load_checkpoint

    files = source_files(reference, key)
    state = load_checkpoint(files.checkpoint)
    if files.config is not None:
        cfg = load_run_config(files.config)
    else:
        if not state.get("config"):
            raise UserError(f"{key}={reference} holds no training config; pass a cvrun checkpoint or run folder")
        cfg = load_run_config(state["config"])
    weights = state["ema"] if state.get("ema") else state["model"]
    broken = [name for name, tensor in weights.items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if broken:
        raise UserError(f"{key}={reference}: its checkpoint {files.checkpoint.name} holds non-finite weights "
                        f"({_short(broken, 3)}): its training diverged; pass a run whose weights are finite")
    return SourceRun(str(Path(reference).expanduser()), cfg, rebuild_model(cfg, state),
                     [str(name) for name in state["class_names"]])


def check_pretrained(cfg: Any) -> None:
    """What model.pretrained can be checked for before a run folder is made: imagenet weights exist for
    the architecture; a run folder can give weights and holds the same architecture."""
    from cvrun.config import load_run_config

    reference = cfg.pretrained
    if reference is None:
        return
    if cfg.name == TIMM:
        check_timm_pretrained(cfg)
        if timm_weights(reference, cfg.arch) is not None:
            return
    if reference == "imagenet":
        imagenet_weights(cfg.name)
        return
    files = source_files(reference, "model.pretrained")
    if files.config is not None:
        require_architecture(load_run_config(files.config).model, cfg, reference)


# The keys that say which architecture a model option builds, beside its name (model=timm's arch, model=target's
# class).
ARCHITECTURE_KEYS = ("arch", "_target_")


def architecture(model_cfg: Any) -> tuple[str, str]:
    """A model config's architecture in words (lenet5, timm convnext_atto) and as settings (model=lenet5,
    model=timm model.arch=convnext_atto): its name, and model.arch or model._target_ where it has one."""
    keys = [(key, getattr(model_cfg, key)) for key in ARCHITECTURE_KEYS if getattr(model_cfg, key, None) is not None]
    return (" ".join([model_cfg.name, *(str(value) for _, value in keys)]),
            " ".join([f"model={model_cfg.name}", *(f"model.{key}={value}" for key, value in keys)]))


def require_architecture(source: Any, model_cfg: Any, reference: str) -> None:
    """A run of another architecture than `model_cfg`'s (its `model` section: `source`) is a user error."""
    (source_words, source_setting), (_, setting) = architecture(source), architecture(model_cfg)
    if source_setting != setting:
        raise UserError(f"model.pretrained={reference} is a {source_words}, but {setting}; "
                        f"use {source_setting} to start from it")


def rebuild_model(cfg: Any, state: dict[str, Any]) -> Classifier:
    """The model a checkpoint was trained as (its config's model group), holding its evaluated weights (EMA if kept)."""
    m = cfg.model
    model = create_model(m.name, len(state["class_names"]), int(state["image_size"]), m.small_input, m.dropout,
                         m.drop_path, **own_keys(m))
    model.load_state_dict(state["ema"] if state.get("ema") else state["model"])
    return model


def imagenet_state_dict(name: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights for `name`, downloaded into (or read from) torch's hub folder."""
    from torch.hub import get_dir

    weights = imagenet_weights(name)
    cached = Path(get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        return weights.get_state_dict(progress=False)
    except OSError as err:  # URLError, timeouts, no route: all OSErrors
        raise UserError(f"model.pretrained=imagenet: cannot download {weights.url} ({err}); without "
                        f"internet, copy that file to {cached}") from None


def imagenet_weights(name: str) -> Any:
    """torchvision's ImageNet weights entry for `name` (nothing downloaded); a UserError when there is none."""
    import torchvision.models

    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (KeyError, ValueError):
        with_weights = sorted(set(torchvision.models.list_models()) & set(MODELS))
        raise UserError(f"model.pretrained=imagenet: torchvision has no ImageNet weights for {name}; "
                        f"use one of {', '.join(with_weights)}, or a cvrun run folder") from None


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
    if isinstance(model, TimmClassifier):
        weights = timm_weights(reference, model.arch)
        if weights is not None:
            return transfer(model, *timm_state_dict(model, weights), True)
    if reference == "imagenet":
        return transfer(model, imagenet_as_classifier(model, imagenet_state_dict(name)), "imagenet", False)
    source = load_source_run(reference)
    own = SimpleNamespace(name=name, arch=getattr(model, "arch", None), _target_=getattr(model, "target", None))
    require_architecture(source.cfg.model, own, reference)
    return transfer(model, source.model.state_dict(), reference, True)
