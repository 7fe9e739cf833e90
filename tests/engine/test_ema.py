"""The EMA of the weights: its warm-up, and what train.log says of it."""

import logging

import pytest
from torch import nn

from cvrun.engine.ema import build_ema


def test_update_n_averages_with_the_warmed_up_decay():
    model = nn.Linear(1, 1, bias=False)
    ema = build_ema(model, decay=0.5)
    expected = None
    for n, value in enumerate([4.0, 2.0, 8.0, 6.0, 1.0]):
        model.weight.data.fill_(value)
        ema.update_parameters(model)
        decay = min(0.5, (1 + n) / (10 + n))  # 0.1, 0.18, 0.25, 0.31, 0.36: below 0.5 for the first 8 updates
        expected = value if n == 0 else decay * expected + (1 - decay) * value
        assert ema.module.weight.item() == pytest.approx(expected, rel=1e-6), n


def test_train_log_says_how_the_ema_averages_and_warns_when_the_run_is_short(tmp_path, caplog):
    from tests.conftest import train_run

    with caplog.at_level(logging.INFO, logger="cvrun"):
        summary = train_run(tmp_path / "run", dataset={"train_size": 100, "test_size": 20},
                            trainer={"epochs": 2, "ema_decay": 0.999})
    assert summary["status"] == "completed"
    assert "decay min(0.999, (1 + n) / (10 + n)) at update n, 0.4000 at this run's last of 6 updates" in caplog.text
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["this run is short for trainer.ema_decay=0.999, which averages over about 1000 updates: it "
                        "takes 6; the warm-up keeps the EMA on the last ~2 updates instead, so the configured decay "
                        "never applies (train longer, or set a lower trainer.ema_decay)"]

