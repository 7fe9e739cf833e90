"""The exponential moving average of the weights (trainer.ema_decay): what a run evaluates, and Mean Teacher's teacher.

torch.optim.swa_utils.AveragedModel keeps the average; its first update copies the weights, and update n
(n = 1, 2, ...) moves the average towards the weights with the decay

    min(trainer.ema_decay, (1 + n) / (10 + n))

the warm-up of TensorFlow's ExponentialMovingAverage (num_updates), which the Mean Teacher paper's code and
timm's EMA also use. Without it an average at 0.999 still holds three-quarters of the random initial weights
after 280 updates; with it the average follows the recent weights until the run is long enough for the
configured decay (0.999: after 8,991 updates).
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

log = logging.getLogger("cvrun")


def warmed_up_decay(update: torch.Tensor, decay: float) -> torch.Tensor:
    """The decay at update `update` (a count tensor, kept on its device: no host sync per step)."""
    return ((1 + update) / (10 + update)).clamp(max=decay)


def build_ema(model: nn.Module, decay: float) -> AveragedModel:
    """The model's EMA with the warmed-up decay, over its parameters and buffers (batch norm's statistics)."""

    @torch.no_grad()
    def average(averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        if not torch.is_floating_point(averaged[0]):  # integer buffers (batch norm's step count) follow the model
            torch._foreach_copy_(averaged, current)
            return
        torch._foreach_lerp_(averaged, current, (1 - warmed_up_decay(updates, decay)).to(averaged[0].dtype))

    return AveragedModel(model, multi_avg_fn=average, use_buffers=True)


def log_ema_plan(decay: float, total_updates: int) -> None:
    """train.log says how the evaluated weights are averaged, and warns in one line when the run is shorter
    than the number of updates the configured decay averages over (1 / (1 - decay))."""
    final = float(warmed_up_decay(torch.tensor(float(total_updates - 1)), decay))
    log.info("EMA of the weights evaluated (validation, best.pt, test): decay min(%s, (1 + n) / (10 + n)) at "
             "update n, %.4f at this run's last of %d updates", decay, final, total_updates)
    horizon = 1 / (1 - decay)
    if total_updates < horizon:
        log.warning("this run is short for trainer.ema_decay=%s, which averages over about %d updates: it takes %d; "
                    "the warm-up keeps the EMA on the last ~%d updates instead, so the configured decay never "
                    "applies (train longer, or set a lower trainer.ema_decay)", decay, math.ceil(horizon),
                    total_updates, math.ceil(1 / (1 - final)))
