"""Model registry: name -> builder, as timm's create_model.

A builder takes (num_classes, image_size, small_input, dropout, drop_path) and
the keys of its own schema, and returns a Classifier: a backbone that maps
images to a feature vector and a linear head. Adding a model is one decorated
function and one YAML file in configs/model/ (and a schema when it takes keys
of its own: a dataclass subclassing ModelConfig, given to register_model).
"""

from __future__ import annotations

import warnings
from dataclasses import fields
from typing import Any, Callable

import torch
from torch import nn

from cvrun.config import ModelConfig
from cvrun.errors import UserError
from cvrun.registry import Registry

MODELS: Registry[Callable[..., "Classifier"]] = Registry("model")

# model.small_input=auto picks the CIFAR-style stem for images this size or smaller.
SMALL_INPUT_MAX = 32


class Classifier(nn.Module):
    """backbone (images -> features) + dropout + head (features -> logits).

    The head is one linear layer, or with `hidden` widths an MLP (LeNet-5's F6 + output).
    What a transfer regime trains anew is `head_layers` of the model's last linear layers
    (1: the output layer alone); the rest is the frozen or slower part.
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
        self.head_layers = 1
        self.backbone_frozen = False
        # True while the inputs are what the frozen part computed beforehand (cached feature
        # extraction): the state_dict stays the whole model's, so checkpoints load like any other.
        self.takes_features = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.takes_features:
            return self._head_part()[1](images)
        return self.head(self.dropout(self.backbone(images)))

    def penultimate(self, images: torch.Tensor) -> torch.Tensor:
        """The input of the output layer (the same computation as forward, stopped one layer short)."""
        return self.hidden_layers(self.dropout(self.backbone(images)))

    def linear_layers(self) -> list[tuple[str, nn.Linear]]:
        return [(name, m) for name, m in self.named_modules() if isinstance(m, nn.Linear)]

    def head_modules(self) -> list[tuple[str, nn.Linear]]:
        """The last `head_layers` linear layers, by name (the output layer last)."""
        return self.linear_layers()[-self.head_layers:]

    def head_parameters(self) -> list[nn.Parameter]:
        return [p for _, module in self.head_modules() for p in module.parameters()]

    def _head_part(self) -> tuple[nn.Module, nn.Module]:
        """(the layers of `head` before the trained head, the trained head), when the trained head lies in `head`."""
        layers = list(self.head) if isinstance(self.head, nn.Sequential) else [self.head]
        first = self.head_modules()[0][1]
        start = next((i for i, layer in enumerate(layers) if layer is first), None)
        if start is None:
            raise ValueError("the trained head starts inside the backbone")
        return nn.Sequential(self.backbone, self.dropout, *layers[:start]), nn.Sequential(*layers[start:])

    def frozen_part(self) -> nn.Module:
        """Images -> the input of the trained head (cached feature extraction); ValueError when the head
        starts inside the backbone (the hidden linear layers of VGG and AlexNet)."""
        return self._head_part()[0]

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
        """No gradients but for the trained head, and the backbone's batch-norm statistics held; or both released."""
        self.backbone_frozen = frozen
        head = {id(p) for p in self.head_parameters()}
        for parameter in self.parameters():
            parameter.requires_grad_(not frozen or id(parameter) in head)
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


def register_model(name: str, config: type = ModelConfig, has_blocks: bool = False):
    """`config`: the model's schema, ModelConfig or a subclass whose own keys the builder gets as keyword
    arguments (model=mlp's hidden). `has_blocks`: the model has residual blocks, so model.drop_path applies."""
    return MODELS.register(name, config=config, has_blocks=has_blocks)


BASE_KEYS = frozenset(f.name for f in fields(ModelConfig))


def own_keys(cfg: Any) -> dict[str, Any]:
    """The values of the keys a `model` config's option adds to ModelConfig (its builder's own arguments)."""
    from omegaconf import OmegaConf

    own = [f.name for f in fields(MODELS.get(cfg.name).config) if f.name not in BASE_KEYS]
    return {key: OmegaConf.to_object(cfg[key]) if OmegaConf.is_config(cfg[key]) else cfg[key] for key in own}


def resolve_small_input(small_input: Any, image_size: int) -> bool:
    value = str(small_input).lower()
    if value == "auto":
        return image_size <= SMALL_INPUT_MAX
    return value == "true"


def create_model(name: str, num_classes: int, image_size: int, small_input: Any = "auto",
                 dropout: float = 0.0, drop_path: float = 0.0, **own: Any) -> Classifier:
    """Model `name`; `own`: keys of its own schema (model=mlp's hidden), at their schema defaults when not given."""
    builder = MODELS.get(name)
    if drop_path > 0 and not builder.has_blocks:
        with_blocks = sorted(n for n, b in MODELS.items() if b.has_blocks)
        raise UserError(f"model.drop_path needs residual blocks, which {name} has not; "
                        f"use model.drop_path=0 or one of {', '.join(with_blocks)}")
    takes = [f.name for f in fields(builder.config) if f.name not in BASE_KEYS]
    unknown = sorted(set(own) - set(takes))
    if unknown:
        raise UserError(f"unknown config key 'model.{unknown[0]}'; model={name} takes "
                        f"{', '.join(f.name for f in fields(builder.config) if f.name != 'name')}")
    own = {**{key: value for key, value in vars(builder.config()).items() if key in takes}, **own}
    return builder(num_classes=num_classes, image_size=image_size,
                   small_input=resolve_small_input(small_input, image_size),
                   dropout=dropout, drop_path=drop_path, **own)


def build_model(cfg: Any, num_classes: int, image_size: int, head_layers: int = 1) -> Classifier:
    """The model of a `model` config group entry, with the weights of `model.pretrained` when set.

    head_layers: how many of the last linear layers form the head that a transfer regime trains anew.
    """
    model = create_model_for(cfg, num_classes, image_size)
    linears = len(model.linear_layers())
    if not 1 <= head_layers <= linears:
        raise UserError(f"regime.head_layers={head_layers}, but {cfg.name} has {linears} linear layer(s): "
                        f"use 1 (the output layer) to {linears}")
    model.head_layers = head_layers
    if cfg.pretrained is not None:
        from cvrun.models.pretrained import load_pretrained

        load_pretrained(model, cfg.name, cfg.pretrained)
    return model


def takes_input_size(cfg: Any, image_size: int) -> bool:
    """Whether the model of a `model` config runs on image_size px images (a shape-only pass on the meta device)."""
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zero-sized layers of a too-small input warn before they fail
            model = create_model(cfg.name, 10, image_size, cfg.small_input, cfg.dropout, cfg.drop_path,
                                 **own_keys(cfg))
            model.eval()(torch.empty(2, 3, image_size, image_size))
    except (RuntimeError, ValueError):
        return False
    return True


def smallest_input_size(cfg: Any, image_size: int) -> int:
    """The smallest size above image_size that the model takes (doubling, then bisecting)."""
    low, high = image_size, image_size * 2
    while not takes_input_size(cfg, high):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if takes_input_size(cfg, middle) else (middle, high)
    return high


def create_model_for(cfg: Any, num_classes: int, image_size: int) -> Classifier:
    """create_model for a `model` config; an image size the model cannot take is a user error naming its smallest.

    One forward pass of a zero image checks the size (no gradients, eval mode: nothing changes); the
    meta-device search for the smallest size runs only when it fails, as it imports torch's compiler
    stack (0.8 s).
    """
    try:
        with warnings.catch_warnings():
            # A too-small input gives zero-sized layers, which warn before the forward pass fails.
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            model = create_model(cfg.name, num_classes, image_size, cfg.small_input, cfg.dropout, cfg.drop_path,
                                 **own_keys(cfg))
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, image_size, image_size))
    except (RuntimeError, ValueError):
        smallest = smallest_input_size(cfg, image_size)
        raise UserError(f"model={cfg.name} cannot take {image_size} px images (dataset.image_size); its smallest "
                        f"input is {smallest} px with model.small_input={cfg.small_input}: set "
                        f"dataset.image_size={smallest} or larger") from None
    return model.train()
