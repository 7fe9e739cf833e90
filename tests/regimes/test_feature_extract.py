"""regime=feature_extract: a frozen pretrained backbone, a new head, optionally on cached features."""

import pytest
import torch

from cvrun.engine.checkpoint import load_checkpoint
from cvrun.errors import UserError
from cvrun.models.pretrained import load_source_run
from tests.conftest import train_run

TARGET = {"classes": ["triangle", "cross"]}


@pytest.mark.parametrize("cache", [False, True])
def test_only_the_head_trains_and_the_backbone_stays_the_source(source_run, tmp_path, cache):
    summary = train_run(tmp_path / "run", dataset=TARGET, model={"pretrained": str(source_run)},
                        regime={"name": "feature_extract", "cache_features": cache}, optim={"lr": 0.05},
                        trainer={"epochs": 4})
    assert summary["status"] == "completed" and summary["test_acc1"] >= 75, summary  # chance 50
    assert summary["trainable_params"] == (120 * 84 + 84) + (84 * 2 + 2)  # lenet5's head alone: F6 + output
    trained = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["model"]
    for key, tensor in load_source_run(str(source_run)).model.backbone.state_dict().items():
        assert torch.equal(trained[f"backbone.{key}"], tensor), key


def test_cached_features_train_the_same_head_as_the_images(source_run, tmp_path):
    """Without augmentation both see the same features in the same order: the same result."""
    results = [train_run(tmp_path / str(cache), dataset=TARGET, model={"pretrained": str(source_run)},
                         regime={"name": "feature_extract", "cache_features": cache}, trainer={"epochs": 2})
               for cache in (False, True)]
    assert abs(results[0]["test_acc1"] - results[1]["test_acc1"]) <= 1.0, results
    assert abs(results[0]["final_train_loss"] - results[1]["final_train_loss"]) < 1e-3, results


def test_transfer_regimes_need_a_pretrained_source(tmp_path):
    for regime in ("feature_extract", "finetune", "lwf"):
        with pytest.raises(UserError, match=f"regime={regime} needs model.pretrained"):
            train_run(tmp_path / regime, regime={"name": regime})
    with pytest.raises(UserError, match="regime=lwf needs model.pretrained \\(a run folder or checkpoint\\)"):
        train_run(tmp_path / "lwf_imagenet", model={"pretrained": "imagenet"}, regime={"name": "lwf"})
