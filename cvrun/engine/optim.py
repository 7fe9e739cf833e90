"""Optimisers and per-step learning-rate schedules."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from cvrun.errors import UserError


def build_optimizer(param_groups: list[dict[str, Any]], cfg: Any, device: torch.device) -> torch.optim.Optimizer:
    """SGD (momentum, nesterov) or AdamW; fused kernels on CUDA."""
    fused = {"fused": True} if device.type == "cuda" else {}
    if cfg.name == "sgd":
        return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay, **fused)
    if cfg.name == "adamw":
        return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=tuple(cfg.betas),
                                 weight_decay=cfg.weight_decay, **fused)
    raise UserError(f"unknown optim '{cfg.name}'; valid optim options: adamw, sgd")


def _with_warmup(warmup_steps: int, after: Callable[[int], float]) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return after(step - warmup_steps)
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Any, base_lr: float, epochs: int,
                    steps_per_epoch: int) -> LRScheduler:
    """A scheduler stepped once per optimiser step."""
    total = epochs * steps_per_epoch
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    if cfg.name == "onecycle":
        return OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                          total_steps=total, pct_start=cfg.pct_start)
    if cfg.name == "cosine":
        floor = cfg.min_lr / base_lr
        span = max(1, total - warmup)

        def cosine(step: int) -> float:
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, span) / span))
        return LambdaLR(optimizer, _with_warmup(warmup, cosine))
    if cfg.name == "fixmatch_cosine":
        span = max(1, total - warmup)

        def seven_sixteenths_cosine(step: int) -> float:
            # Sohn et al. 2020: lr x cos(7 pi t / 16), t the share of training done (it ends at 0.2 x lr).
            return math.cos(7 * math.pi * min(step, span) / (16 * span))
        return LambdaLR(optimizer, _with_warmup(warmup, seven_sixteenths_cosine))
    if cfg.name == "step":
        boundaries = [round(m * total) for m in cfg.milestones]

        def stepped(step: int) -> float:
            return cfg.gamma ** sum(step + warmup >= b for b in boundaries)
        return LambdaLR(optimizer, _with_warmup(warmup, stepped))
    raise UserError(f"unknown sched '{cfg.name}'; valid sched options: cosine, fixmatch_cosine, onecycle, step")
