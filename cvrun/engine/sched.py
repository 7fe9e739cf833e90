"""Learning-rate schedules: the `sched` config group, each stepped once per optimiser step.

Each is a registered builder with its schema beside it. Adding a schedule is one function decorated with
@register_schedule (with a dataclass subclassing SchedConfig for keys of its own) and one YAML file in
configs/sched/. A builder gets the optimiser, its config, the base lr (optim.lr), and the run's length in
optimiser steps (all, and per epoch); sched.warmup_epochs is each schedule's to honour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, List

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from cvrun.config import SchedConfig
from cvrun.errors import require
from cvrun.registry import Registry

Builder = Callable[[torch.optim.Optimizer, Any, float, int, int], LRScheduler]
SCHEDULES: Registry[Builder] = Registry("sched")


def register_schedule(name: str, config: type = SchedConfig) -> Callable[[Builder], Builder]:
    """`config`: the schedule's schema, SchedConfig or a subclass with keys of its own."""
    return SCHEDULES.register(name, config=config)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Any, base_lr: float, epochs: int,
                    steps_per_epoch: int) -> LRScheduler:
    """The schedule a `sched` config names, stepped once per optimiser step."""
    return SCHEDULES.get(cfg.name)(optimizer, cfg, base_lr, epochs * steps_per_epoch, steps_per_epoch)


def _with_warmup(warmup_steps: int, after: Callable[[int], float]) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return after(step - warmup_steps)
    return factor


def warmup_steps(cfg: Any, steps_per_epoch: int) -> int:
    return round(cfg.warmup_epochs * steps_per_epoch)


@dataclass
class CosineConfig(SchedConfig):
    min_lr: float = 0.0  # where the decay ends

    def check(self) -> None:
        super().check()
        require(self.min_lr >= 0, f"sched.min_lr must be >= 0, got {self.min_lr}")


@register_schedule("cosine", config=CosineConfig)
def cosine(optimizer: torch.optim.Optimizer, cfg: Any, base_lr: float, total: int, steps_per_epoch: int) -> LRScheduler:
    """Cosine decay to min_lr over the steps after the warm-up (Loshchilov & Hutter 2017, without restarts)."""
    warmup = warmup_steps(cfg, steps_per_epoch)
    floor = cfg.min_lr / base_lr
    span = max(1, total - warmup)

    def decay(step: int) -> float:
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, span) / span))
    return LambdaLR(optimizer, _with_warmup(warmup, decay))


@register_schedule("fixmatch_cosine")
def fixmatch_cosine(optimizer: torch.optim.Optimizer, cfg: Any, base_lr: float, total: int,
                    steps_per_epoch: int) -> LRScheduler:
    warmup = warmup_steps(cfg, steps_per_epoch)
    span = max(1, total - warmup)

    def seven_sixteenths_cosine(step: int) -> float:
        # Sohn et al. 2020: lr x cos(7 pi t / 16), t the share of training done (it ends at 0.2 x lr).
        return math.cos(7 * math.pi * min(step, span) / (16 * span))
    return LambdaLR(optimizer, _with_warmup(warmup, seven_sixteenths_cosine))


@dataclass
class StepConfig(SchedConfig):
    milestones: List[float] = field(default_factory=lambda: [0.5, 0.75])  # shares of the training
    gamma: float = 0.1  # the lr's factor at each milestone

    def check(self) -> None:
        super().check()
        require(all(0 < m <= 1 for m in self.milestones),
                f"sched.milestones are shares of the training (0.5: halfway) in (0, 1], got {list(self.milestones)}")


@register_schedule("step", config=StepConfig)
def step(optimizer: torch.optim.Optimizer, cfg: Any, base_lr: float, total: int, steps_per_epoch: int) -> LRScheduler:
    warmup = warmup_steps(cfg, steps_per_epoch)
    boundaries = [round(m * total) for m in cfg.milestones]

    def stepped(step: int) -> float:
        return cfg.gamma ** sum(step + warmup >= b for b in boundaries)
    return LambdaLR(optimizer, _with_warmup(warmup, stepped))


@dataclass
class OneCycleConfig(SchedConfig):
    pct_start: float = 0.25  # the share of the run spent rising to optim.lr (its warm-up)

    def check(self) -> None:
        super().check()
        require(0 < self.pct_start < 1, f"sched.pct_start must be in (0, 1), got {self.pct_start}")
        require(self.warmup_epochs == 0, "sched=onecycle warms up for sched.pct_start of the run: drop "
                f"sched.warmup_epochs (got {self.warmup_epochs})")


@register_schedule("onecycle", config=OneCycleConfig)
def onecycle(optimizer: torch.optim.Optimizer, cfg: Any, base_lr: float, total: int,
             steps_per_epoch: int) -> LRScheduler:
    """torch's OneCycleLR up to each parameter group's lr."""
    return OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total,
                      pct_start=cfg.pct_start)


@dataclass
class CosineRestartsConfig(SchedConfig):
    """SGDR's warm restarts: its T_0 in epochs, T_mult and eta_min."""

    period_epochs: float = 10.0  # the first cycle's length in epochs (after any warm-up)
    period_mult: int = 2  # each cycle this many times longer than the one before
    min_lr: float = 0.0  # where each cycle ends

    def check(self) -> None:
        super().check()
        require(self.period_epochs > 0, f"sched.period_epochs must be positive, got {self.period_epochs}")
        require(self.period_mult >= 1, f"sched.period_mult must be an integer >= 1, got {self.period_mult}")
        require(self.min_lr >= 0, f"sched.min_lr must be >= 0, got {self.min_lr}")


def restart_position(step: int, period: int, mult: int) -> tuple[int, int]:
    """(steps into the current cycle, its length) at `step`, the first cycle `period` steps long: torch's
    CosineAnnealingWarmRestarts' T_cur and T_i."""
    if mult == 1:
        return step % period, period
    start, length = 0, period
    while step >= start + length:  # integers: no rounding at a cycle's end, as torch's logarithm may have
        start, length = start + length, length * mult
    return step - start, length


@register_schedule("cosine_restarts", config=CosineRestartsConfig)
def cosine_restarts(optimizer: torch.optim.Optimizer, cfg: Any, base_lr: float, total: int,
                    steps_per_epoch: int) -> LRScheduler:
    """SGDR (Loshchilov & Hutter 2017): cosine decay to min_lr, restarted at the lr after each cycle, each
    cycle period_mult times the one before. torch's CosineAnnealingWarmRestarts stepped per optimiser step
    with T_0 = period_epochs x steps per epoch; after a linear warm-up when sched.warmup_epochs is set."""
    warmup = warmup_steps(cfg, steps_per_epoch)
    period = max(1, round(cfg.period_epochs * steps_per_epoch))
    floor = cfg.min_lr / base_lr

    def restarted(step: int) -> float:
        into, length = restart_position(step, period, cfg.period_mult)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * into / length))
    return LambdaLR(optimizer, _with_warmup(warmup, restarted))
