"""regime=finetune: two learning rates, and the head trained alone for the first epochs when asked."""

import logging

import pytest
import torch

from cvrun.engine.checkpoint import load_checkpoint
from cvrun.models import create_model
from cvrun.models.pretrained import load_source_run
from cvrun.regimes.common import backbone_and_head_groups, head_first
from tests.conftest import make_cfg, train_run


def test_backbone_and_head_get_their_learning_rates():
    model = create_model("lenet5", 3, 32)
    cfg = make_cfg(optim={"lr": 0.2}, regime={"name": "finetune", "backbone_lr_mult": 0.1})
    backbone, head = backbone_and_head_groups(model, cfg)
    assert backbone["lr"] == pytest.approx(0.02) and head["lr"] == 0.2
    assert len(backbone["params"]) + len(head["params"]) == len(list(model.parameters()))


def test_head_first_freezes_then_releases_the_backbone():
    model = create_model("lenet5", 3, 32)
    hook = head_first(model, freeze_epochs=2)
    hook(0)
    assert model.backbone_frozen and not any(p.requires_grad for p in model.backbone.parameters())
    hook(2)
    assert not model.backbone_frozen and all(p.requires_grad for p in model.backbone.parameters())
    assert head_first(model, 0) is None


def test_finetune_trains_everything_after_the_frozen_epochs(source_run, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="cvrun"):
        summary = train_run(tmp_path / "run", dataset={"classes": ["triangle", "cross"]},
                            model={"pretrained": str(source_run)}, optim={"lr": 0.05},
                            regime={"name": "finetune", "freeze_epochs": 1}, trainer={"epochs": 4})
    assert summary["status"] == "completed" and summary["test_acc1"] >= 75, summary
    assert summary["trainable_params"] == summary["params"]
    assert "epoch 1: backbone frozen" in caplog.text and "epoch 2: backbone unfrozen" in caplog.text
    trained = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"]
    source = load_source_run(str(source_run)).model.backbone.state_dict()
    assert not torch.equal(trained["backbone.0.weight"], source["0.weight"])
