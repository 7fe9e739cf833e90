import pytest
import torch

from cvrun.io import load_checkpoint, save_checkpoint
from cvrun.engine.rundir import RunFolder
from cvrun.errors import UserError


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "epoch": 2})
    assert torch.load(path, weights_only=True)["epoch"] == 2
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left behind


def test_truncated_or_foreign_checkpoint_is_a_user_error(tmp_path):
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(1000)}})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError, match="truncated or not a cvrun checkpoint"):
        load_checkpoint(path)
    torch.save({"something": 1}, path)
    with pytest.raises(UserError, match="not a cvrun checkpoint"):
        load_checkpoint(path)


def test_metrics_csv_keeps_the_contract_columns_first(tmp_path):
    run = RunFolder(tmp_path)
    run.write_metrics([{"epoch": 1, "lr": 0.1, "train_loss": 1.23456, "val_acc1": 50.0, "extra": 1}])
    header, row = (tmp_path / "metrics.csv").read_text().splitlines()
    assert header.startswith("epoch,lr,train_loss,train_acc1,val_loss,val_acc1,val_acc5,epoch_seconds,"
                             "train_images_per_second")
    assert header.endswith(",extra") and row.startswith("1,0.1,1.2346,")
