"""regime=lwf: the old output layer kept, its recorded outputs distilled, the old task scored at the end."""

import torch
import torch.nn.functional as F

from cvrun.io import load_checkpoint
from cvrun.models import create_model
from cvrun.models.pretrained import load_source_run
from tests.conftest import make_cfg, train_run
from tests.regimes.conftest import bare_regime

TARGET = {"classes": ["triangle", "cross"]}


def test_the_loss_is_cross_entropy_plus_lambda_times_the_old_output_term(tmp_path):
    torch.manual_seed(0)
    model = create_model("lenet5", 2, 32)
    old_output = torch.nn.Linear(84, 3)  # on the shared F6 features, like the new output layer
    images = torch.randn(4, 3, 32, 32)
    labels = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        recorded = old_output(model.hidden_layers(model.backbone(images)))
    targets = {"label": labels, "old_logits": recorded + torch.tensor([1.0, 0.0, -1.0])}
    trained = torch.nn.ModuleDict({"model": model, "old_output": old_output})
    for lambda_old in (0.0, 2.0):
        regime = bare_regime(make_cfg(regime={"name": "lwf", "lambda_old": lambda_old, "temperature": 2.0}), tmp_path)
        regime.data = type("Data", (), {"num_classes": 2})()
        loss, _ = regime.training_step(trained, {"labeled": (images, targets)}, None)
        shifted = F.kl_div(F.log_softmax(recorded / 2, 1), F.log_softmax(targets["old_logits"] / 2, 1),
                           log_target=True, reduction="batchmean")
        expected = F.cross_entropy(model(images), labels) + lambda_old * shifted
        assert torch.isclose(loss, expected, atol=1e-5), (lambda_old, loss, expected)


def test_lwf_keeps_the_old_output_and_scores_the_old_task(source_run, tmp_path):
    source = load_source_run(str(source_run))
    kept = {}
    for lambda_old in (0.0, 1.0):
        summary = train_run(tmp_path / str(lambda_old), dataset=TARGET, model={"pretrained": str(source_run)},
                            regime={"name": "lwf", "lambda_old": lambda_old, "backbone_lr_mult": 0.1}, optim={"lr": 0.05},
                            trainer={"epochs": 3})
        assert summary["status"] == "completed" and summary["test_acc1"] >= 75, summary
        assert summary["old_task_classes"] == ["circle", "ring", "square"]
        assert summary["old_task_acc1_before"] == source_summary_acc(source_run)
        assert 0 <= summary["old_task_acc1"] <= 100
        kept[lambda_old] = load_checkpoint(tmp_path / str(lambda_old) / "checkpoints" / "best.pt")
    # lambda_old=0 is fine-tuning with the old output layer kept as it was; lambda_old=1 trains it too.
    assert torch.equal(kept[0.0]["extra"]["old_output"]["weight"], source.model.output_layer.weight)
    assert not torch.equal(kept[1.0]["extra"]["old_output"]["weight"], source.model.output_layer.weight)
    # F6 is shared by both tasks, so it trains in both runs.
    assert not torch.equal(kept[0.0]["model"]["head.0.weight"], source.model.hidden_layers[0].weight)


def test_the_warm_up_trains_the_new_output_alone_on_the_source_shared_layers(source_run, tmp_path):
    """regime.freeze_epochs covering the whole run: backbone, F6 and old output stay the source's, bit for bit."""
    source = load_source_run(str(source_run))
    summary = train_run(tmp_path / "warm", dataset=TARGET, model={"pretrained": str(source_run)},
                        regime={"name": "lwf", "freeze_epochs": 2}, optim={"lr": 0.05}, trainer={"epochs": 2})
    trained = load_checkpoint(tmp_path / "warm" / "checkpoints" / "last.pt")
    for key, tensor in source.model.state_dict().items():
        if not key.startswith("head.2."):  # everything but the source's output layer is shared
            assert torch.equal(trained["model"][key], tensor), key
    assert torch.equal(trained["extra"]["old_output"]["weight"], source.model.output_layer.weight)
    assert summary["old_task_acc1"] == summary["old_task_acc1_before"]


def source_summary_acc(run):
    import json

    return json.loads((run / "summary.json").read_text())["test_acc1"]
