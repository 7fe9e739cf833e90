"""Model registry: name -> builder, as timm's create_model.

A builder takes (num_classes, small_input, dropout, drop_path) and returns a
Classifier: a backbone that maps images to a feature vector and a linear
head. Adding a model is one decorated function and one YAML file in
configs/model/.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from cvrun.errors import UserError

MODELS: dict[str, Callable[..., "Classifier"]] = {}

# model.small_input=auto picks the CIFAR-style stem for images this size or smaller.
SMALL_INPUT_MAX = 32


class Classifier(nn.Module):
    """backbone (images -> features) + dropout + head (features -> logits).

    The head is one linear layer, or with `hidden` widths an MLP (LeNet-5's F6 + output):
    what a transfer regime trains anew.
    """

    def __init__(self, backbone: nn.Module, num_features: int, num_classes: int, dropout: float = 0.0,
                 hidden: tuple[int, ...] = ()):
        super().__init__()
        self.backbone = backbone
        self.num_features = num_features
        self.dropout = nn.Dropout(dropout)
        layers: list[nn.Module] = []
        for width_in, width_out in zip((num_features, *hidden), hidden):
            layers += [nn.Linear(width_in, width_out), nn.ReLU(inplace=True)]
        last = nn.Linear(hidden[-1] if hidden else num_features, num_classes)
        self.head = nn.Sequential(*layers, last) if hidden else last
        self.backbone_frozen = False
        # True while the inputs are features the backbone computed beforehand (cached feature
        # extraction): the state_dict stays the whole model's, so checkpoints load like any other.
        self.takes_features = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = images if self.takes_features else self.backbone(images)
        return self.head(self.dropout(features))

    @property
    def output_layer(self) -> nn.Linear:
        """The head's last layer; with `hidden` widths the layers before it (LeNet-5's F6) feed it."""
        return self.head[-1] if isinstance(self.head, nn.Sequential) else self.head

    def replace_output_layer(self, layer: nn.Linear) -> None:
        # A method, not a setter: nn.Module.__setattr__ would register `layer` under a new name.
        if isinstance(self.head, nn.Sequential):
            self.head[-1] = layer
        else:
            self.head = layer

    @property
    def hidden_layers(self) -> nn.Sequential:
        """The head's layers before its output layer (empty for a one-layer head)."""
        return self.head[:-1] if isinstance(self.head, nn.Sequential) else nn.Sequential()

    def freeze_backbone(self, frozen: bool = True) -> None:
        """No gradients for the backbone and its batch-norm statistics held, or both released."""
        self.backbone_frozen = frozen
        self.backbone.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(all parameters, trainable parameters)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def register_model(name: str, has_blocks: bool = False):
    """`has_blocks`: the model has residual blocks, so model.drop_path applies."""
    def add(fn):
        fn.has_blocks = has_blocks
        MODELS[name] = fn
        return fn
    return add


def resolve_small_input(small_input: Any, image_size: int) -> bool:
    value = str(small_input).lower()
    if value == "auto":
        return image_size <= SMALL_INPUT_MAX
    return value == "true"


def create_model(name: str, num_classes: int, image_size: int, small_input: Any = "auto",
                 dropout: float = 0.0, drop_path: float = 0.0) -> Classifier:
    if name not in MODELS:
        raise UserError(f"unknown model '{name}'; valid models: {', '.join(sorted(MODELS))}")
    builder = MODELS[name]
    if drop_path > 0 and not builder.has_blocks:
        with_blocks = sorted(n for n, b in MODELS.items() if b.has_blocks)
        raise UserError(f"model.drop_path needs residual blocks, which {name} has not; "
                        f"use model.drop_path=0 or one of {', '.join(with_blocks)}")
    return builder(num_classes=num_classes, image_size=image_size,
                   small_input=resolve_small_input(small_input, image_size),
                   dropout=dropout, drop_path=drop_path)


def build_model(cfg: Any, num_classes: int, image_size: int) -> Classifier:
    """The model of a `model` config group entry, with the weights of `model.pretrained` when set."""
    model = create_model(cfg.name, num_classes, image_size, cfg.small_input, cfg.dropout, cfg.drop_path)
    if cfg.pretrained is not None:
        from cvrun.models.pretrained import load_pretrained

        load_pretrained(model, cfg.name, cfg.pretrained)
    return model
