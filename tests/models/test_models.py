"""Every registered model: forward at 32 px, head/backbone split, dropout and drop_path."""

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from cvrun.config import ModelConfig
from cvrun.errors import UserError
from cvrun.models import MODELS, build_model, create_model
from cvrun.models.registry import Classifier, count_parameters, register_model, resolve_small_input
from tests.conftest import make_cfg

EXPECTED = {"linear", "mlp", "lenet5", "alexnet", "vgg11", "vgg16", "vgg19", "vgg11_bn", "vgg16_bn", "vgg19_bn", "resnet18",
            "resnet50", "wrn28_2", "wrn28_10", "mobilenet_v3_small", "resnet20", "resnet32", "resnet44", "resnet56",
            "resnet110", "resnet8x4", "resnet32x4", "wrn16_2", "wrn40_2"}
# Parameter counts as the papers give them (classes, millions): He et al. 2016 (CIFAR-10, two significant
# digits), RepDistiller/CRD (CIFAR-100), USB (WRN-28-2) and the WRN paper (WRN-28-10).
PUBLISHED = {"resnet20": (10, "0.27"), "resnet32": (10, "0.46"), "resnet44": (10, "0.66"), "resnet56": (10, "0.85"),
             "resnet110": (10, "1.7"), "resnet8x4": (100, "1.23"), "resnet32x4": (100, "7.43"),
             "wrn16_2": (100, "0.70"), "wrn40_2": (100, "2.26"), "wrn28_2": (10, "1.47"), "wrn28_10": (10, "36.5")}


def test_registry_holds_the_designed_models():
    assert EXPECTED <= set(MODELS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_forward_at_32px_and_head_backbone_split(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, image_size=32).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.backbone(images)
        logits = model(images)
    assert features.shape == (2, model.num_features)
    assert logits.shape == (2, 7)
    last = model.head[-1] if isinstance(model.head, nn.Sequential) else model.head
    assert isinstance(last, nn.Linear) and last.out_features == 7
    with torch.no_grad():
        assert torch.allclose(model.head(features), logits, atol=1e-5)
    backbone_params = sum(p.numel() for p in model.backbone.parameters())
    head_params = sum(p.numel() for p in model.head.parameters())
    assert count_parameters(model)[0] == backbone_params + head_params
    assert head_params == (model.num_features * 7 + 7 if name != "lenet5" else 120 * 84 + 84 + 84 * 7 + 7)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_match_the_published_ones(name):
    """At the published precision; within 1% where it gives three digits (He et al.'s 1.7M for resnet110 is
    1.728M: its option-A shortcuts have no parameters)."""
    classes, published = PUBLISHED[name]
    millions = count_parameters(create_model(name, classes, 32))[0] / 1e6
    digits = len(published.split(".")[1])
    assert f"{millions:.{digits}f}" == published or abs(millions / float(published) - 1) < 0.01, millions


def test_small_input_auto_follows_image_size():
    assert resolve_small_input("auto", 32) and not resolve_small_input("auto", 64)
    assert resolve_small_input(True, 224) and not resolve_small_input("false", 32)
    cifar = create_model("resnet18", 10, 32)
    imagenet = create_model("resnet18", 10, 32, small_input=False)
    assert cifar.backbone.conv1.stride == (1, 1) and isinstance(cifar.backbone.maxpool, nn.Identity)
    assert imagenet.backbone.conv1.stride == (2, 2)


def test_lenet_adapts_to_28px():
    assert create_model("lenet5", 10, 28)(torch.zeros(1, 3, 28, 28)).shape == (1, 10)


def test_dropout_reaches_the_head():
    model = create_model("resnet18", 10, 32, dropout=0.3)
    assert model.dropout.p == 0.3
    vgg = create_model("vgg11", 10, 32, dropout=0.4)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.4 for m in vgg.backbone.modules())


@pytest.mark.parametrize("name", ["resnet18", "wrn28_2"])
def test_drop_path_drops_residual_branches_in_training_only(name):
    torch.manual_seed(0)
    model = create_model(name, 10, 32, drop_path=0.5)
    images = torch.randn(4, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(images), model(images))
    model.train()
    with torch.no_grad():
        assert not torch.allclose(model(images), model(images))


def test_drop_path_on_a_model_without_blocks_is_a_user_error():
    with pytest.raises(UserError, match="vgg16 has not"):
        create_model("vgg16", 10, 32, drop_path=0.1)


def test_unknown_model_lists_valid_ones():
    with pytest.raises(UserError, match="valid model options: alexnet"):
        create_model("resnet9000", 10, 32)


def test_linear_and_mlp_take_the_pixels():
    """model=linear is one layer over every pixel (its weight rows are class templates); model=mlp's hidden
    widths are model.hidden, which other models refuse."""
    linear = create_model("linear", 10, 32)
    assert [m.weight.shape for _, m in linear.linear_layers()] == [(10, 3 * 32 * 32)]
    mlp = create_model("mlp", 10, 32, hidden=[64, 32])
    assert [m.weight.shape[0] for _, m in mlp.linear_layers()] == [64, 32, 10] and mlp.num_features == 32
    assert count_parameters(create_model("mlp", 10, 32))[0] == 3072 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10
    with pytest.raises(UserError, match=r"unknown config key 'model.hidden'; model=lenet5 takes pretrained, "
                                        r"small_input, dropout, drop_path$"):
        create_model("lenet5", 10, 32, hidden=[64])


@dataclass
class WidthConfig(ModelConfig):
    width: int = 8


def width_net(num_classes: int, image_size: int, small_input: bool, dropout: float, drop_path: float,
              width: int) -> Classifier:
    """A model with a key of its own, as a user's plugin would register it."""
    return Classifier(nn.Sequential(nn.Flatten(), nn.Linear(3 * image_size * image_size, width)), width, num_classes,
                      dropout)


def test_a_model_with_a_key_of_its_own_gets_it_from_its_config_and_others_refuse_it(monkeypatch):
    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))  # registered for this test alone
    register_model("test_width_net", config=WidthConfig)(width_net)
    cfg = make_cfg(model={"name": "test_width_net", "width": 24, "dropout": 0.1})
    model = build_model(cfg.model, num_classes=3, image_size=8)
    assert model.num_features == 24 and model.dropout.p == 0.1
    assert create_model("test_width_net", 3, 8).num_features == 8  # the schema's default
    with pytest.raises(UserError, match=r"unknown config key 'model.width'; model=resnet18 takes pretrained, "):
        make_cfg(model={"name": "resnet18", "width": 24})
    with pytest.raises(UserError, match=r"unknown config key 'model.depth'; model=test_width_net takes pretrained, "
                                        r"small_input, dropout, drop_path, width"):
        make_cfg(model={"name": "test_width_net", "depth": 3})
