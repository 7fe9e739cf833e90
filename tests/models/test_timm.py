"""model=timm: timm's architectures as Classifiers, their weights from files, folders and the hub's cache."""

import json
import logging
import re

import pytest
import timm
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file

from cvrun.errors import UserError
from cvrun.models import build_model, create_model
from cvrun.models.cam import grad_cam, last_conv
from cvrun.models.pretrained import check_pretrained
from cvrun.models.timm_models import fill_dataset
from cvrun.regimes.transfer import backbone_and_head_groups
from cvrun.config import option_values
from tests.conftest import cli, make_cfg, write_image_tree

# One of each family at 32 px: a ResNet, a ConvNeXt, an EfficientNet, a ViT whose 4 px patches make an 8 x 8 grid
# (img_size is set from the data for architectures of a fixed input size). timm's test-sized models where it has
# one: the same classes as their full-sized kin, built in a fraction of the time. timm's own kwargs pass through.
FAMILIES = {"test_resnet": {}, "test_convnext": {"drop_path_rate": 0.1}, "test_efficientnet": {},
            "test_vit": {"patch_size": 4}}


def timm_cfg(arch: str, pretrained=None, **kwargs):
    return OmegaConf.create({"name": "timm", "arch": arch, "pretrained": pretrained, "small_input": False,
                             "dropout": 0.0, "drop_path": 0.0, "kwargs": kwargs})


@pytest.mark.parametrize("arch", FAMILIES)
def test_a_timm_model_computes_what_timm_does_with_timms_classifier_as_its_head(arch):
    kwargs = FAMILIES[arch]
    torch.manual_seed(0)
    reference = timm.create_model(arch, num_classes=3, **({"img_size": 32} if "vit" in arch else {}), **kwargs).eval()
    torch.manual_seed(0)
    model = create_model("timm", 3, 32, arch=arch, kwargs=kwargs).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(images), reference(images), atol=1e-5)
        features = model.backbone(images)  # what knn embeds and inspect plots
        assert features.shape == (2, model.num_features)
        assert torch.allclose(model.output_layer(model.penultimate(images)), model(images), atol=1e-5)  # lwf's path
    if "drop_path_rate" in kwargs:
        # stochastic depth rising linearly to drop_path_rate in the last block, as timm builds it
        assert max(m.drop_prob for m in model.modules() if type(m).__name__ == "DropPath") == pytest.approx(0.1)
    # The head is timm's classifier (its initialisation kept), the one linear layer a transfer regime trains anew.
    assert model.head_modules() == [("head", model.head)] and model.head.weight.shape == (3, model.num_features)
    assert torch.equal(model.head.weight, reference.get_classifier().weight)
    model.freeze_backbone()
    assert {id(p) for p in model.parameters() if p.requires_grad} == {id(p) for p in model.head.parameters()}
    backbone, head = backbone_and_head_groups(model, 0.1, 0.1)
    assert len(head["params"]) == 2 and len(backbone["params"]) + 2 == len(list(model.parameters()))
    # Grad-CAM on the last conv stage; a ViT's only convolution is its patch embedding: none is drawn.
    if "vit" in arch:
        assert last_conv(model) is None
    else:
        assert last_conv(model) is not None
        maps = grad_cam(model, images, torch.tensor([0, 2]))
        assert maps.shape == (2, 32, 32) and torch.isfinite(maps).all()


@pytest.fixture(scope="module")
def saved_resnet(tmp_path_factory):
    """timm's test_resnet with 3 classes, saved as safetensors: a weights file as a user downloads one."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(1)
    source = timm.create_model("test_resnet", num_classes=3)
    save_file(source.state_dict(), folder / "model.safetensors")
    return folder / "model.safetensors", source.state_dict()


def as_timm_keys(model) -> dict:
    """The Classifier's tensors under timm's names (backbone.model.X -> X, head.* -> fc.*)."""
    return {(f"fc.{key[5:]}" if key.startswith("head.") else key.removeprefix("backbone.model.")): tensor
            for key, tensor in model.state_dict().items()}


@pytest.mark.parametrize("layout", ["safetensors", "pytorch", "hf_cache"])
def test_weights_from_a_file_or_a_folder_are_the_files_own(layout, saved_resnet, tmp_path):
    file, weights = saved_resnet
    if layout == "pytorch":
        reference = tmp_path / "checkpoint.pth"
        torch.save({"state_dict": weights}, reference)  # timm's own checkpoints nest the weights
    elif layout == "hf_cache":  # models--org--name/refs/main + snapshots/<revision>/{model.safetensors,config.json}
        reference = tmp_path / "models--me--test_resnet"
        snapshot = reference / "snapshots" / "abc123"
        snapshot.mkdir(parents=True)
        (reference / "refs").mkdir()
        (reference / "refs" / "main").write_text("abc123")
        (snapshot / "model.safetensors").write_bytes(file.read_bytes())
        (snapshot / "config.json").write_text(json.dumps({"architecture": "test_resnet", "num_classes": 3}))
    else:
        reference = file
    cfg = timm_cfg("test_resnet", str(reference))
    check_pretrained(cfg)
    same_classes = as_timm_keys(build_model(cfg, 3, 32))
    assert same_classes.keys() == weights.keys() and all(torch.equal(same_classes[k], weights[k]) for k in weights)
    other_classes = as_timm_keys(build_model(cfg, 5, 32))  # another class count: the head starts anew
    assert all(torch.equal(other_classes[k], weights[k]) for k in weights if not k.startswith("fc."))
    assert other_classes["fc.weight"].shape == (5, 96)


def test_weights_of_another_architecture_are_refused_in_one_line(saved_resnet, tmp_path):
    file, _ = saved_resnet
    with pytest.raises(UserError, match=r"model.pretrained=.*model.safetensors does not fit timm's test_convnext"):
        build_model(timm_cfg("test_convnext", str(file)), 3, 32)
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet50"}))
    (tmp_path / "model.safetensors").write_bytes(file.read_bytes())
    with pytest.raises(UserError, match="holds timm's resnet50 .its config.json., but model.arch=test_resnet"):
        check_pretrained(timm_cfg("test_resnet", str(tmp_path)))


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hub"


def test_hub_offline_names_the_file_to_fetch_and_hub_reads_the_cache(hub_cache, saved_resnet):
    with pytest.raises(UserError) as raised:
        check_pretrained(timm_cfg("test_resnet", "hub"))
    assert str(raised.value) == (
        "model.pretrained=hub: cannot download timm's test_resnet weights (HF_HUB_OFFLINE is set); fetch "
        "https://huggingface.co/timm/test_resnet.r160_in1k/resolve/main/model.safetensors on a machine with "
        "internet, copy it here and set model.pretrained=PATH/TO/THAT/FILE")
    # Once in the cache (where timm's download puts it), hub reads it there.
    snapshot = hub_cache / "models--timm--test_resnet.r160_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    file, weights = saved_resnet
    (snapshot / "model.safetensors").write_bytes(file.read_bytes())
    cfg = timm_cfg("test_resnet", "hub")
    check_pretrained(cfg)
    loaded = as_timm_keys(build_model(cfg, 3, 32))
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)


def filled(dataset: dict, model: dict):
    """A train config as validated, with the timm weights' data config applied (fill_dataset is idempotent: it
    leaves what validation may have filled already)."""
    cfg = make_cfg(dataset=dataset, model=model)
    fill_dataset(cfg)
    return cfg.dataset


def test_the_weights_pretrained_config_fills_the_dataset_unless_set(tmp_path, caplog):
    efficientnet = tmp_path / "efficientnet.safetensors"
    save_file(timm.create_model("test_efficientnet", num_classes=3).state_dict(), efficientnet)
    model = {"name": "timm", "arch": "test_efficientnet", "pretrained": str(efficientnet)}
    shapes = option_values("dataset", "shapes")  # as dataset=shapes composes it: mean 0.5, std 0.25
    with caplog.at_level(logging.INFO, logger="cvrun"):
        dataset = filled(shapes, model)
    assert (list(dataset.mean), list(dataset.std)) == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert (dataset.crop_pct, dataset.interpolation) == (0.95, "bicubic")  # timm's test_efficientnet's
    assert "timm weights of test_efficientnet: dataset.mean=[0.485, 0.456, 0.406], dataset.std=" in caplog.text
    chosen = filled({**shapes, "mean": [0.4, 0.4, 0.4]}, model)  # set on the command line: it stays
    assert (list(chosen.mean), list(chosen.std)) == ([0.4] * 3, [0.229, 0.224, 0.225])
    random_init = filled(shapes, {**model, "pretrained": None})
    assert (list(random_init.mean), list(random_init.std)) == ([0.5] * 3, [0.25] * 3)


def test_info_prints_a_timm_models_parameters_and_macs(tmp_path):
    result = cli("info", "model=timm", "model.arch=convnext_atto", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    params = sum(p.numel() for p in timm.create_model("convnext_atto", num_classes=10).parameters())
    assert re.search(rf"^parameters +{params:,}$", result.stdout, re.M), result.stdout
    assert re.search(r"^multiply-accumulates +[0-9.]+ M per image$", result.stdout, re.M), result.stdout


def test_finetune_from_a_weights_file_learns_and_exports(saved_resnet, tmp_path):
    """The command line end to end: a weights file -> regime=finetune -> an ONNX file verified against PyTorch."""
    file, _ = saved_resnet
    tree = write_image_tree(tmp_path / "tree", {"dark": 20, "mid": 20, "light": 20}, test_per_class=10, size=32)
    run = tmp_path / "run"
    result = cli("train", "dataset=imagefolder", f"dataset.root={tree}", "dataset.image_size=32", "model=timm",
                 "model.arch=test_resnet", f"model.pretrained={file}", "regime=finetune", "trainer.epochs=3",
                 "regime.backbone_lr_mult=1",  # the file holds random weights: the backbone must learn at full lr
                 "trainer.num_workers=0", "trainer.batch_size=16", "optim.lr=0.05", "trainer.progress=false",
                 f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["test_acc1"] > 70, summary  # chance 33
    log = (run / "train.log").read_text()
    assert "pretrained weights from" in log and "model timm test_resnet: " in log  # the header names the arch
    exported = cli("export", str(run), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert "onnxruntime agrees with PyTorch" in exported.stdout and (run / "export" / "model.onnx").is_file()
