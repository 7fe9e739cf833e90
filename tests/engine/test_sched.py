import math

import pytest
import torch

from cvrun.engine.optim import build_optimizer, build_scheduler
from tests.conftest import make_cfg


def _lrs(sched_cfg, epochs=4, steps=5, lr=0.1):
    param = torch.nn.Parameter(torch.zeros(1))
    cfg = make_cfg(optim={"lr": lr}, sched=sched_cfg)
    optimizer = build_optimizer([{"params": [param]}], cfg.optim, torch.device("cpu"))
    scheduler = build_scheduler(optimizer, cfg.sched, lr, epochs, steps)
    lrs = []
    for _ in range(epochs * steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_cosine_with_warmup_rises_then_decays_to_min_lr():
    lrs = _lrs({"name": "cosine", "warmup_epochs": 1, "min_lr": 0.001})
    assert lrs[0] == pytest.approx(0.02) and lrs[4] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert lrs[-1] == pytest.approx(0.001, abs=2e-3)


def test_step_schedule_multiplies_at_milestones():
    lrs = _lrs({"name": "step", "milestones": [0.5, 0.75], "gamma": 0.1})
    assert lrs[9] == pytest.approx(0.1) and lrs[10] == pytest.approx(0.01) and lrs[15] == pytest.approx(0.001)


def test_fixmatch_cosine_is_cos_7_pi_t_over_16():
    lrs = _lrs({"name": "fixmatch_cosine"})  # 20 steps
    assert lrs == pytest.approx([0.1 * math.cos(7 * math.pi * step / (16 * 20)) for step in range(20)])
    assert lrs[-1] > 0.1 * math.cos(7 * math.pi / 16)  # it ends near 0.2 x lr, never at 0


def test_onecycle_peaks_at_lr():
    lrs = _lrs({"name": "onecycle", "pct_start": 0.25})
    assert max(lrs) == pytest.approx(0.1, rel=1e-3) and lrs[0] < 0.01 and lrs[-1] < 1e-3


def test_sgd_and_adamw_settings():
    param = torch.nn.Parameter(torch.zeros(1))
    sgd = build_optimizer([{"params": [param]}], make_cfg().optim, torch.device("cpu"))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    adamw = build_optimizer([{"params": [param]}], make_cfg(optim={"name": "adamw", "lr": 1e-3}).optim,
                            torch.device("cpu"))
    assert isinstance(adamw, torch.optim.AdamW)
