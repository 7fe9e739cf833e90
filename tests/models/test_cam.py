"""Grad-CAM from the last convolutional layer, for every model that has one."""

import pytest
import torch
from torch import nn

from cvrun.models import MODELS, create_model
from cvrun.models.cam import grad_cam, last_conv


class ColourDetectors(nn.Module):
    """Conv channel 0 sees red, channel 1 green; class 0's score is all of channel 0, class 1's of channel 1."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])[:, :, None, None])

    def forward(self, images):
        return torch.relu(self.conv(images)).sum(dim=(2, 3))


def test_the_map_lies_where_the_class_evidence_is():
    """Red on the left half, green on the right: the map of class 0 (red) covers the left, of class 1 the right."""
    images = torch.zeros(1, 3, 8, 8)
    images[0, 0, :, :4] = images[0, 1, :, 4:] = 1
    red, green = (grad_cam(ColourDetectors(), images, torch.tensor([c]))[0] for c in (0, 1))
    assert red[:, :4].min() == 1 and red[:, 4:].max() == 0
    assert green[:, 4:].min() == 1 and green[:, :4].max() == 0


# One model of each builder (the others differ in depth or width only): LeNet-5, AlexNet, VGG with and
# without batch norm, torchvision's ResNets (basic and bottleneck blocks), the CIFAR ResNets (option-A and
# 1x1 shortcuts), the wide ResNets and MobileNetV3.
FAMILIES = ["lenet5", "alexnet", "vgg11", "vgg11_bn", "resnet18", "resnet50", "resnet20", "resnet8x4", "wrn16_2",
            "mobilenet_v3_small"]


def test_the_families_cover_every_model_with_a_conv_layer():
    # timm's families have their maps tested in test_timm.py; a user's own module (model=target) is any module.
    builders = {MODELS.get(name).__code__ for name in MODELS if name not in ("linear", "mlp", "timm", "target")}
    assert builders == {MODELS.get(name).__code__ for name in FAMILIES}


@pytest.mark.parametrize("name", FAMILIES)
def test_every_model_with_a_conv_layer_gets_maps_at_the_image_size(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, image_size=32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    maps = grad_cam(model, torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 3]))
    assert maps.shape == (3, 32, 32) and torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is left as it was


def test_models_without_a_conv_layer_have_none():
    assert last_conv(create_model("linear", 10, 32)) is None and last_conv(create_model("mlp", 10, 32)) is None
