"""Optimisers: the `optim` config group. Each is a registered builder with its schema beside it.

Adding an optimiser is one function decorated with @register_optimizer (with a dataclass subclassing
OptimConfig for keys of its own) and one YAML file in configs/optim/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional

import torch

from cvrun.config import OptimConfig
from cvrun.errors import require
from cvrun.registry import Registry

Builder = Callable[[list[dict[str, Any]], Any, torch.device], torch.optim.Optimizer]
OPTIMIZERS: Registry[Builder] = Registry("optim")


def register_optimizer(name: str, config: type = OptimConfig) -> Callable[[Builder], Builder]:
    """`config`: the optimiser's schema, OptimConfig or a subclass with keys of its own."""
    return OPTIMIZERS.register(name, config=config)


def build_optimizer(param_groups: list[dict[str, Any]], cfg: Any, device: torch.device) -> torch.optim.Optimizer:
    """The optimiser an `optim` config names, over the regime's parameter groups."""
    return OPTIMIZERS.get(cfg.name)(param_groups, cfg, device)


def fused_on(device: torch.device) -> dict[str, bool]:
    """torch's fused kernels where they exist (CUDA)."""
    return {"fused": True} if device.type == "cuda" else {}


@dataclass
class SgdConfig(OptimConfig):
    momentum: float = 0.9
    nesterov: bool = True  # with momentum 0 plain SGD

    def check(self) -> None:
        super().check()
        require(0 <= self.momentum < 1, f"optim.momentum must be in [0, 1), got {self.momentum}")


@register_optimizer("sgd", config=SgdConfig)
def sgd(param_groups: list[dict[str, Any]], cfg: Any, device: torch.device) -> torch.optim.Optimizer:
    return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                           weight_decay=cfg.weight_decay, **fused_on(device))


@dataclass
class AdamConfig(OptimConfig):
    """Adam's family: the decay rates of the gradient's running mean and of its square's."""

    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])

    def check(self) -> None:
        super().check()
        require(len(self.betas) == 2 and all(0 <= beta < 1 for beta in self.betas),
                f"optim.betas must be two values in [0, 1), e.g. [0.9,0.999], got {list(self.betas)}")


@register_optimizer("adamw", config=AdamConfig)
def adamw(param_groups: list[dict[str, Any]], cfg: Any, device: torch.device) -> torch.optim.Optimizer:
    """Adam with weight decay decoupled from the gradient (Loshchilov & Hutter 2019)."""
    return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
                             **fused_on(device))


@register_optimizer("adam", config=AdamConfig)
def adam(param_groups: list[dict[str, Any]], cfg: Any, device: torch.device) -> torch.optim.Optimizer:
    """Adam (Kingma & Ba 2015); its weight decay is an L2 term added to the gradient."""
    return torch.optim.Adam(param_groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
                            **fused_on(device))


@dataclass
class LambConfig(AdamConfig):
    # The global gradient norm is clipped to this before the update (timm's default); null: not clipped.
    max_grad_norm: Optional[float] = 1.0


@register_optimizer("lamb", config=LambConfig)
def lamb(param_groups: list[dict[str, Any]], cfg: Any, device: torch.device) -> torch.optim.Optimizer:
    """LAMB (You et al. 2020): Adam's step scaled per layer by the ratio of the weights' norm to the step's,
    for large batches; timm's implementation."""
    from timm.optim import Lamb

    return Lamb(param_groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
                max_grad_norm=cfg.max_grad_norm)
