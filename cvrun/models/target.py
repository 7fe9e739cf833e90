"""model=target: a plain nn.Module of the user's own, built by Hydra's instantiate from `model._target_`.

    # my_conf/model/my_net.yaml (cvrun train --config-dir my_conf model=my_net)
    defaults: [target_schema, _self_]
    name: target
    _target_: my_models.TinyNet   # a class (or function) importable from the launch folder or PYTHONPATH
    kwargs: {width: 32}           # its arguments; num_classes is cvrun's (from the data)

The module maps images to logits. Its head is its last linear layer, which forward applies last (checked on
one image: the logits must be that layer's output of the rest's); `model.head` names it when it is another
attribute. With a head the module becomes a Classifier's backbone (the head replaced by an identity) and
head, so every regime runs, the transfer regimes included; a module whose logits come otherwise runs
under every regime that needs only logits, and a transfer regime says it needs a head.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import os
import sys
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
from torch import nn

from cvrun.config import ModelConfig
from cvrun.errors import UserError, require
from cvrun.models.registry import Classifier, register_model
from cvrun.models.timm_models import open_mapping


@dataclass
class TargetModelConfig(ModelConfig):
    name: str = "target"
    _target_: str = "???"  # the module's class or function, as Hydra's instantiate takes it (my_models.TinyNet)
    kwargs: Dict[str, Any] = open_mapping()  # its arguments (num_classes is set from the data)
    head: Optional[str] = None  # the attribute holding its output layer (null: its last linear layer)

    def title(self) -> str:
        return f"target {self._target_}"

    def check(self) -> None:
        super().check()
        require("num_classes" not in self.kwargs,
                "model.kwargs.num_classes is cvrun's to set (the class count comes from the data); drop it")


def instantiate(target: str, num_classes: int, image_size: int, kwargs: dict[str, Any]) -> nn.Module:
    """Hydra's instantiate of `target` with num_classes (and image_size where it takes one); the launch folder
    is importable, as with `python -m`. What cannot be imported or built is a UserError naming it."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module_name, _, attribute = target.rpartition(".")
        builder = getattr(importlib.import_module(module_name), attribute)
        takes = inspect.signature(builder).parameters
        extra = {"image_size": image_size} if "image_size" in takes and "image_size" not in kwargs else {}
        module = hydra_instantiate({"_target_": target, "num_classes": num_classes, **extra, **kwargs})
    except (ImportError, AttributeError, InstantiationException, ValueError, TypeError) as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise UserError(f"model._target_={target} cannot be built with num_classes and model.kwargs={kwargs} "
                        f"({reason}); it must be importable (a module in the launch folder or on PYTHONPATH) "
                        "and take num_classes") from None
    if not isinstance(module, nn.Module):
        raise UserError(f"model._target_={target} built a {type(module).__name__}, not a torch nn.Module")
    return module


class WholeModel(Classifier):
    """A module whose head is not known: its logits as they are; what needs a head says so."""

    def __init__(self, module: nn.Module, target: str, num_classes: int):
        nn.Module.__init__(self)
        self.backbone, self.num_features, self.target = module, num_classes, target
        self.dropout, self.head = nn.Identity(), nn.Identity()
        self.head_layers, self.backbone_frozen, self.takes_features = 1, False, False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def head_modules(self) -> list[tuple[str, nn.Linear]]:
        raise UserError(f"model._target_={self.target} has no head cvrun can find (its logits are not the output "
                        "of a linear layer that forward applies last); a transfer regime trains the head anew: "
                        "set model.head to the attribute of its output layer, or use a regime that needs only logits")


def find_head(module: nn.Module, head: str | None, target: str, image_size: int) -> str | None:
    """The attribute path of the module's output layer: `head`, else its last linear layer, if forward applies it
    last (the logits equal it applied to what the rest computes); None when none passes."""
    names = [head] if head else [name for name, m in module.named_modules() if isinstance(m, nn.Linear)][-1:]
    if head:
        try:
            module.get_submodule(head)
        except AttributeError:
            raise UserError(f"model.head={head}: model._target_={target} has no such attribute") from None
    for name in names:
        if applies_last(module, name, image_size):
            return name
    if head:
        raise UserError(f"model.head={head} is not what model._target_={target}'s forward applies last (its logits "
                        f"differ from {head} applied to the rest's output); name the layer that makes the logits")
    return None


def applies_last(module: nn.Module, name: str, image_size: int) -> bool:
    images = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    trial = copy.deepcopy(module).eval()
    layer = trial.get_submodule(name)
    with torch.no_grad():
        logits = trial(images)
        trial.set_submodule(name, nn.Identity())
        try:
            rebuilt = layer(trial(images))
        except RuntimeError:  # the rest's output is not what the layer takes: the layer is not last
            return False
    return rebuilt.shape == logits.shape and torch.allclose(rebuilt, logits, atol=1e-5)


@register_model("target", config=TargetModelConfig)
def target_model(num_classes: int, image_size: int, small_input: bool, dropout: float, drop_path: float,
                 _target_: str, kwargs: dict[str, Any], head: str | None) -> Classifier:
    module = instantiate(_target_, num_classes, image_size, dict(kwargs))
    name = find_head(module, head, _target_, image_size)
    if name is None:
        require(dropout == 0, f"model.dropout={dropout} goes before the head, which model._target_={_target_} "
                              "does not show cvrun: set model.head, or model.dropout=0")
        return WholeModel(module, _target_, num_classes)
    layer = module.get_submodule(name)
    require(isinstance(layer, nn.Linear), f"model.head={name} is a {type(layer).__name__}; the head cvrun trains "
                                          "anew is a linear layer (nn.Linear)")
    module.set_submodule(name, nn.Identity())
    model = Classifier(module, layer.in_features, num_classes, dropout)
    model.replace_output_layer(layer)
    model.target = _target_
    return model
