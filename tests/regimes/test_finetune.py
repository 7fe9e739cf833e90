"""regime=finetune: two learning rates, and the head trained alone for the first epochs when asked."""

import logging

import pytest
import torch

from cvrun.io import load_checkpoint
from cvrun.models import create_model
from cvrun.models.pretrained import load_source_run
from cvrun.regimes.transfer import backbone_and_head_groups, head_first
from tests.conftest import train_run


def test_backbone_and_head_get_their_learning_rates():
    model = create_model("lenet5", 3, 32)
    backbone, head = backbone_and_head_groups(model, 0.2, 0.1)
    assert backbone["lr"] == pytest.approx(0.02) and head["lr"] == 0.2
    assert len(backbone["params"]) + len(head["params"]) == len(list(model.parameters()))
    assert head["params"] == list(model.output_layer.parameters())  # head_layers=1: the output layer
    model.head_layers = 2
    assert len(backbone_and_head_groups(model, 0.2, 0.1)[1]["params"]) == 4  # F6 too


def test_head_first_freezes_then_releases_the_backbone():
    model = create_model("lenet5", 3, 32)
    head_first(model, 0, freeze_epochs=2)
    assert model.backbone_frozen and not any(p.requires_grad for p in model.backbone.parameters())
    head_first(model, 2, freeze_epochs=2)
    assert not model.backbone_frozen and all(p.requires_grad for p in model.backbone.parameters())
    head_first(model, 0, freeze_epochs=0)
    assert not model.backbone_frozen


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
