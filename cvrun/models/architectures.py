"""The registered architectures.

torchvision builds AlexNet, VGG, ResNet and MobileNetV3; cvrun adapts their
stems to small images and splits off the last linear layer as the head.
LeNet-5 and the CIFAR Wide ResNets have no torchvision builder and are
written here.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cvrun.models.registry import Classifier, register_model


# --- LeNet-5 -----------------------------------------------------------------

@register_model("lenet5")
def lenet5(num_classes: int, image_size: int, small_input: bool, dropout: float, drop_path: float) -> Classifier:
    """conv5-pool-conv5-pool-fc120-fc84-fc (LeCun et al. 1998, with ReLU and max pooling).

    The backbone ends at C5, the 120 features; the head is F6 (84) + the output layer.
    F6 is the most task-specific layer: features taken before it transfer better (k-NN on
    CIFAR-10 animals -> vehicles: 49.7% from C5, 44.9% from F6, 46.8% from raw pixels).
    """
    side = ((image_size - 4) // 2 - 4) // 2
    backbone = nn.Sequential(
        nn.Conv2d(3, 6, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * side * side, 120), nn.ReLU(inplace=True),
    )
    return Classifier(backbone, 120, num_classes, dropout, hidden=(84,))


# --- Wide ResNet (Zagoruyko & Komodakis 2016) --------------------------------

class WideBlock(nn.Module):
    """Pre-activation basic block; the residual branch can be dropped (stochastic depth)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, drop_path: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.shortcut = (None if in_channels == out_channels and stride == 1
                         else nn.Conv2d(in_channels, out_channels, 1, stride, bias=False))
        self.drop_path = stochastic_depth_layer(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return shortcut + self.drop_path(out)


def wide_resnet(depth: int, width: int, small_input: bool, drop_path: float) -> tuple[nn.Module, int]:
    blocks_per_group = (depth - 4) // 6
    channels = [16, 16 * width, 32 * width, 64 * width]
    # CIFAR stem for small images; an ImageNet-style /4 stem for large ones.
    stem = (nn.Conv2d(3, 16, 3, 1, 1, bias=False) if small_input else nn.Sequential(
        nn.Conv2d(3, 16, 7, 2, 3, bias=False), nn.MaxPool2d(3, 2, 1)))
    layers: list[nn.Module] = [stem]
    total = 3 * blocks_per_group
    for group in range(3):
        for i in range(blocks_per_group):
            index = group * blocks_per_group + i
            layers.append(WideBlock(channels[group] if i == 0 else channels[group + 1], channels[group + 1],
                                    (1 if group == 0 else 2) if i == 0 else 1, drop_path * index / max(1, total - 1)))
    layers += [nn.BatchNorm2d(channels[3]), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), channels[3]


@register_model("wrn28_2", has_blocks=True)
def wrn28_2(num_classes: int, image_size: int, small_input: bool, dropout: float, drop_path: float) -> Classifier:
    backbone, features = wide_resnet(28, 2, small_input, drop_path)
    return Classifier(backbone, features, num_classes, dropout)


@register_model("wrn28_10", has_blocks=True)
def wrn28_10(num_classes: int, image_size: int, small_input: bool, dropout: float, drop_path: float) -> Classifier:
    backbone, features = wide_resnet(28, 10, small_input, drop_path)
    return Classifier(backbone, features, num_classes, dropout)


# --- torchvision models ------------------------------------------------------
# torchvision is imported where a builder needs it: its import costs about 1.4 s of every start-up
# (torchvision.ops pulls in torch._dynamo), which LeNet-5 and the Wide ResNets do without.

def stochastic_depth_layer(rate: float) -> nn.Module:
    """torchvision's StochasticDepth ("row": whole samples dropped) where a rate is set, else a no-op."""
    if rate == 0:
        return nn.Identity()
    from torchvision.ops import StochasticDepth

    return StochasticDepth(rate, "row")


def torchvision_model(name: str) -> Callable[..., nn.Module]:
    import torchvision.models

    return getattr(torchvision.models, name)


def _add_drop_path(net: nn.Module, drop_path: float) -> None:
    """Stochastic depth on each residual branch, rising linearly with depth.

    torchvision's blocks add the shortcut inside forward(), so the drop is
    applied to the output of the branch's last batch norm through a forward
    hook: the module tree, and so the state_dict keys that ImageNet weights
    use, stay as torchvision made them.
    """
    from torchvision.ops import stochastic_depth

    blocks = [b for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for b in layer]
    for index, block in enumerate(blocks):
        last_bn = block.bn3 if hasattr(block, "bn3") else block.bn2
        rate = drop_path * index / max(1, len(blocks) - 1)
        last_bn.register_forward_hook(
            lambda module, inputs, out, rate=rate: stochastic_depth(out, rate, "row", module.training))


def _resnet(builder, num_classes: int, small_input: bool, dropout: float, drop_path: float) -> Classifier:
    net = builder()
    if small_input:  # CIFAR stem: 3x3 stride-1 conv, no max pool.
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    if drop_path > 0:
        _add_drop_path(net, drop_path)
    features = net.fc.in_features
    net.fc = nn.Identity()
    return Classifier(net, features, num_classes, dropout)


@register_model("resnet18", has_blocks=True)
def resnet18(num_classes: int, image_size: int, small_input: bool, dropout: float, drop_path: float) -> Classifier:
    return _resnet(torchvision_model("resnet18"), num_classes, small_input, dropout, drop_path)


@register_model("resnet50", has_blocks=True)
def resnet50(num_classes: int, image_size: int, small_input: bool, dropout: float, drop_path: float) -> Classifier:
    return _resnet(torchvision_model("resnet50"), num_classes, small_input, dropout, drop_path)


def _split_classifier(net: nn.Module) -> int:
    """Cut the output layer off a torchvision `classifier`; return its input width."""
    features = net.classifier[-1].in_features
    net.classifier[-1] = nn.Identity()
    return features


def _vgg(builder, num_classes: int, small_input: bool, dropout: float) -> Classifier:
    net = builder(dropout=dropout)
    if small_input:  # 32 px leaves 1x1x512 after the features: a 512-wide classifier.
        net.avgpool = nn.AdaptiveAvgPool2d(1)
        net.classifier = nn.Sequential(
            nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(dropout),
            nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(dropout),
            nn.Linear(512, num_classes))
    return Classifier(net, _split_classifier(net), num_classes)


def _register_vgg(name: str) -> None:

    @register_model(name)
    def build(num_classes: int, image_size: int, small_input: bool, dropout: float, drop_path: float) -> Classifier:
        return _vgg(torchvision_model(name), num_classes, small_input, dropout)


for _name in ("vgg11", "vgg16", "vgg19", "vgg11_bn", "vgg16_bn", "vgg19_bn"):
    _register_vgg(_name)


@register_model("alexnet")
def alexnet(num_classes: int, image_size: int, small_input: bool, dropout: float, drop_path: float) -> Classifier:
    net = torchvision_model("alexnet")(dropout=dropout)
    if small_input:
        # The 11x11 stride-4 stem would leave nothing of a 32 px image: a 3x3
        # stride-1 stem keeps the three max pools (32 -> 15 -> 7 -> 3), then a
        # global pool feeds a 1024-wide classifier.
        net.features[0] = nn.Conv2d(3, 64, 3, 1, 1)
        net.avgpool = nn.AdaptiveAvgPool2d(1)
        net.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256, 1024), nn.ReLU(True),
            nn.Dropout(dropout), nn.Linear(1024, 1024), nn.ReLU(True),
            nn.Linear(1024, num_classes))
    return Classifier(net, _split_classifier(net), num_classes)


@register_model("mobilenet_v3_small")
def mobilenet_v3_small(num_classes: int, image_size: int, small_input: bool, dropout: float,
                       drop_path: float) -> Classifier:
    net = torchvision_model("mobilenet_v3_small")(dropout=dropout)
    if small_input:  # stride 1 in the stem: 32 px ends at 2x2 instead of 1x1.
        net.features[0][0].stride = (1, 1)
    return Classifier(net, _split_classifier(net), num_classes)
