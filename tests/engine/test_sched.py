import csv
import math

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts

from cvrun.engine.optim import build_optimizer
from cvrun.engine.sched import SCHEDULES, build_scheduler, restart_position
from cvrun.errors import UserError
from tests.conftest import cli, make_cfg


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


@pytest.mark.parametrize("period_epochs, mult", [(1, 1), (0.6, 2), (1, 3)])
def test_cosine_restarts_steps_as_torchs_warm_restarts_per_optimiser_step(period_epochs, mult):
    # 8 epochs of 5 steps; the first cycle is period_epochs x 5 steps (3 steps for 0.6 epochs).
    lrs = _lrs({"name": "cosine_restarts", "period_epochs": period_epochs, "period_mult": mult, "min_lr": 0.01},
               epochs=8)
    param = torch.nn.Parameter(torch.zeros(1))
    reference = torch.optim.SGD([param], lr=0.1)
    torchs = CosineAnnealingWarmRestarts(reference, T_0=round(period_epochs * 5), T_mult=mult, eta_min=0.01)
    expected = []
    for _ in range(40):
        expected.append(reference.param_groups[0]["lr"])
        reference.step()
        torchs.step()
    assert lrs == pytest.approx(expected)
    restarts = [step for step in range(1, 40) if lrs[step] > lrs[step - 1]]
    assert restarts and all(lrs[step] == pytest.approx(0.1) for step in restarts)


def test_cosine_restarts_after_a_warmup_and_its_cycle_positions():
    lrs = _lrs({"name": "cosine_restarts", "warmup_epochs": 1, "period_epochs": 1, "period_mult": 1}, epochs=3)
    assert lrs[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])  # warm-up, then a cycle of 5 steps
    assert lrs[5] == pytest.approx(0.1) and lrs[10] == pytest.approx(0.1) and lrs[9] < 0.01
    # cycles of 3, 6, 12 steps: step 9 is the second cycle's end, 10 the third's start
    assert [restart_position(step, 3, 2) for step in (0, 2, 3, 8, 9, 20)] == [(0, 3), (2, 3), (0, 6), (5, 6),
                                                                             (0, 12), (11, 12)]


def test_every_schedule_has_a_schema_and_its_range_checks_are_one_line():
    assert all(hasattr(build, "config") for _, build in SCHEDULES.items())
    with pytest.raises(UserError, match=r"sched.period_mult must be an integer >= 1, got 0"):
        make_cfg(sched={"name": "cosine_restarts", "period_mult": 0})
    with pytest.raises(UserError, match=r"sched=onecycle warms up for sched.pct_start of the run"):
        make_cfg(sched={"name": "onecycle", "warmup_epochs": 1})


def test_a_run_with_lamb_and_warm_restarts_from_the_command_line(tmp_path):
    """optim=lamb sched=cosine_restarts compose, train and record each epoch's starting lr: with cycles of 1.5
    epochs it falls in the first, then restarts inside the second (epoch 3 starts higher than epoch 2)."""
    result = cli("train", "dataset=shapes", "dataset.train_size=240", "dataset.test_size=40", "dataset.image_size=16",
                 "model=mlp", "model.hidden=[32]", "optim=lamb", "sched=cosine_restarts", "sched.period_epochs=1.5",
                 "sched.period_mult=1", "trainer.epochs=3", "trainer.batch_size=36", "trainer.progress=false",
                 "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lrs = [float(row["lr"]) for row in csv.DictReader((tmp_path / "run" / "metrics.csv").open())]
    # 216 training images, batches of 36: 6 steps an epoch, cycles of 9 steps; epochs start at steps 0, 6, 12
    expected = [0.005 * 0.5 * (1 + math.cos(math.pi * into / 9)) for into in (0, 6, 3)]
    assert lrs == pytest.approx(expected, abs=1e-4)  # metrics.csv keeps 2 significant digits
