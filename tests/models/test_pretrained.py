"""model.pretrained: torchvision's ImageNet weights through torch's hub folder, run folders, checkpoints."""

import logging
import urllib.error

import pytest
import torch
import torchvision

from cvrun.errors import UserError
from cvrun.models import build_model, create_model
from cvrun.models.pretrained import load_source_run
from tests.conftest import make_cfg


def model_cfg(**values):
    return make_cfg(model=values).model


@pytest.fixture
def hub_weights(tmp_path, monkeypatch):
    """Random mobilenet_v3_small weights placed where torchvision looks for its ImageNet file."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.MobileNet_V3_Small_Weights.DEFAULT
    torch.manual_seed(3)
    state = torchvision.models.mobilenet_v3_small().state_dict()
    target = tmp_path / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[1]
    target.parent.mkdir(parents=True)
    torch.save(state, target)
    return state


def test_imagenet_weights_load_through_torchvision_and_the_head_is_replaced(hub_weights, caplog):
    cfg = model_cfg(name="mobilenet_v3_small", pretrained="imagenet", small_input=False)
    with caplog.at_level(logging.INFO, logger="cvrun"):
        model = build_model(cfg, num_classes=5, image_size=64)
    own = model.state_dict()
    assert torch.equal(own["backbone.features.0.0.weight"], hub_weights["features.0.0.weight"])
    assert torch.equal(own["backbone.classifier.0.weight"], hub_weights["classifier.0.weight"])
    assert own["head.weight"].shape == (5, 1024)
    assert "skipped 2 (head.weight, head.bias)" in caplog.text and "newly initialised 2" in caplog.text
    thousand = build_model(cfg, num_classes=1000, image_size=64)
    assert torch.equal(thousand.state_dict()["head.weight"], hub_weights["classifier.3.weight"])


def test_imagenet_offline_names_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(UserError, match=r"cannot download https://download.pytorch.org/models/resnet18-.*"
                                        r"copy that file to .*hub/checkpoints/resnet18-"):
        build_model(model_cfg(name="resnet18", pretrained="imagenet"), 10, 32)


def test_models_without_imagenet_weights_say_which_have_them():
    with pytest.raises(UserError, match="no ImageNet weights for lenet5; use one of .*resnet18"):
        build_model(model_cfg(name="lenet5", pretrained="imagenet"), 10, 32)


def test_a_run_folder_and_its_checkpoint_fill_all_but_the_output_layer(source_run, caplog):
    """The head is the output layer alone (regime.head_layers=1): LeNet-5's F6 comes from the source too."""
    source = load_source_run(str(source_run))
    assert source.class_names == ["circle", "ring", "square"] and source.cfg.model.name == "lenet5"
    for reference in (source_run, source_run / "checkpoints" / "best.pt"):
        with caplog.at_level(logging.INFO, logger="cvrun"):
            model = build_model(model_cfg(name="lenet5", pretrained=str(reference)), num_classes=2, image_size=32)
        for key, tensor in source.model.backbone.state_dict().items():
            assert torch.equal(model.backbone.state_dict()[key], tensor), key
        assert torch.equal(model.head[0].weight, source.model.head[0].weight)
        assert model.head[-1].out_features == 2
        assert "loaded 8 tensors; skipped 2 (head.2.weight, head.2.bias)" in caplog.text, caplog.text


def test_head_layers_2_makes_lenet5s_f6_part_of_the_new_head(source_run, caplog):
    source = load_source_run(str(source_run))
    with caplog.at_level(logging.INFO, logger="cvrun"):
        model = build_model(model_cfg(name="lenet5", pretrained=str(source_run)), 2, 32, head_layers=2)
    assert "loaded 6 tensors; skipped 4 (head.0.weight, head.0.bias, head.2.weight, head.2.bias)" in caplog.text
    assert not torch.equal(model.head[0].weight, source.model.head[0].weight)
    assert [name for name, _ in model.head_modules()] == ["head.0", "head.2"]
    with pytest.raises(UserError, match=r"regime.head_layers=4, but lenet5 has 3 linear layer\(s\): use 1"):
        build_model(model_cfg(name="lenet5"), 2, 32, head_layers=4)
    same_classes = build_model(model_cfg(name="lenet5", pretrained=str(source_run)), num_classes=3, image_size=32)
    assert torch.equal(same_classes.head[0].weight, source.model.head[0].weight)  # same classes: the head moves too
    assert torch.equal(same_classes.head[2].weight, source.model.head[2].weight)


def test_pretrained_mistakes_are_user_errors(source_run, tmp_path):
    with pytest.raises(UserError, match=r"is a lenet5, but model=resnet18; use model=lenet5"):
        build_model(model_cfg(name="resnet18", pretrained=str(source_run)), 2, 32)
    with pytest.raises(UserError, match="shape .* set model.small_input and dataset.image_size"):
        build_model(model_cfg(name="lenet5", pretrained=str(source_run)), 2, 40)
    with pytest.raises(UserError, match="does not exist"):
        build_model(model_cfg(name="lenet5", pretrained=str(tmp_path / "nowhere")), 2, 32)
    with pytest.raises(UserError, match="not a cvrun run folder"):
        build_model(model_cfg(name="lenet5", pretrained=str(tmp_path)), 2, 32)
    (tmp_path / "cut.pt").write_bytes((source_run / "checkpoints" / "best.pt").read_bytes()[:500])
    with pytest.raises(UserError, match="truncated or not a cvrun checkpoint"):
        build_model(model_cfg(name="lenet5", pretrained=str(tmp_path / "cut.pt")), 2, 32)


def test_freezing_the_backbone_stops_gradients_and_batch_norm_statistics():
    model = create_model("resnet18", 4, 32)
    model.freeze_backbone()
    model.train()
    before = model.backbone.bn1.running_mean.clone()
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    assert not model.backbone.bn1.training and model.head.training
    assert torch.equal(model.backbone.bn1.running_mean, before)
    assert all(p.grad is None for p in model.backbone.parameters()) and model.head.weight.grad is not None
    model.freeze_backbone(False)
    assert model.backbone.bn1.training and all(p.requires_grad for p in model.backbone.parameters())


def test_a_source_without_weights_says_why(source_run, tmp_path):
    """A run that completed without best.pt (a regime that trains no weights) is not "ended before its first
    epoch"; a run that did end before it is."""
    from tests.conftest import train_run

    knn = tmp_path / "knn"
    train_run(knn, dataset={"train_size": 60, "test_size": 20}, regime={"name": "knn", "features": "pixels", "k": 3})
    with pytest.raises(UserError, match=r"model.pretrained=.*knn completed without checkpoints/best.pt \(its regime, "
                                        r"knn, keeps no weights, or the file was removed\)"):
        load_source_run(str(knn))
    early = tmp_path / "early"
    early.mkdir()
    (early / "config.yaml").write_text((source_run / "config.yaml").read_text())
    (early / "summary.json").write_text('{"status": "interrupted"}')
    with pytest.raises(UserError, match="has no checkpoints/best.pt \\(the run ended before its first epoch\\)"):
        load_source_run(str(early))
