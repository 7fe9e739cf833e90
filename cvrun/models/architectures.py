"""The registered architectures.

torchvision builds AlexNet, VGG, ResNet and MobileNetV3; cvrun adapts their
stems to small images and splits off the last linear layer as the head.
LeNet-5, the CIFAR ResNets (resnet20 to resnet110, resnet8x4, resnet32x4)
and the Wide ResNets have no torchvision builder and are written here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List

import torch
import torch.nn.functional as F
from torch import nn

from cvrun.config import ModelConfig
from cvrun.errors import require
from cvrun.models.registry import Classifier, register_model


# --- Fully connected: the lecture's first classifiers --------------------------

@register_model("linear")
def linear(num_classes: int, image_size: int, small_input: bool, dropout: float, drop_path: float) -> Classifier:
    """One fully connected layer over every pixel: each class's weight row, reshaped to the image, is the
    template it matches (`cvrun inspect` draws them). The backbone only flattens, so its features are pixels."""
    return Classifier(nn.Flatten(), 3 * image_size * image_size, num_classes, dropout)


@dataclass
class MlpConfig(ModelConfig):
    hidden: List[int] = field(default_factory=lambda: [512, 256])  # the hidden layers' widths

    def check(self) -> None:
        super().check()
        require(len(self.hidden) > 0 and all(width > 0 for width in self.hidden),
                f"model.hidden needs one positive width per hidden layer, e.g. [512,256], got {list(self.hidden)}")


@register_model("mlp", config=MlpConfig)
def mlp(num_classes: int, image_size: int, small_input: bool, dropout: float, drop_path: float,
        hidden: list[int]) -> Classifier:
    """Pixels -> fully connected ReLU layers of `model.hidden` widths (the backbone) -> the output layer."""
    widths = (3 * image_size * image_size, *hidden)
    layers: list[nn.Module] = [nn.Flatten()]
    for width_in, width_out in zip(widths, widths[1:]):
        layers += [nn.Linear(width_in, width_out), nn.ReLU(inplace=True)]
    return Classifier(nn.Sequential(*layers), hidden[-1], num_classes, dropout)


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


def _register_wide_resnet(name: str, depth: int, width: int) -> None:
    @register_model(name, has_blocks=True)
    def build(num_classes: int, image_size: int, small_input: bool, dropout: float, drop_path: float) -> Classifier:
        backbone, features = wide_resnet(depth, width, small_input, drop_path)
        return Classifier(backbone, features, num_classes, dropout)


# WRN-d-k: 28-2 and 28-10 of FixMatch's and USB's tables, 16-2 and 40-2 of RepDistiller's.
for _name, _depth, _width in (("wrn16_2", 16, 2), ("wrn28_2", 28, 2), ("wrn28_10", 28, 10), ("wrn40_2", 40, 2)):
    _register_wide_resnet(_name, _depth, _width)


# --- CIFAR ResNets (He et al. 2016; the wide ones of RepDistiller, Tian et al. 2020) ---------

class PaddedShortcut(nn.Module):
    """He et al.'s option A: the identity, subsampled by 2 and zero-padded with the new channels (no parameters)."""

    def __init__(self, extra_channels: int):
        super().__init__()
        self.extra = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class BasicBlock(nn.Module):
    """conv-bn-relu-conv-bn plus the shortcut, then relu. Where the shape changes the shortcut is option A's
    padding (He et al., the resnet20-110 of their CIFAR table) or a 1x1 conv and batch norm (option B, as
    RepDistiller's resnet8x4 and resnet32x4 have it)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, drop_path: float, padded: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if in_channels == out_channels and stride == 1:
            self.shortcut: nn.Module = nn.Identity()
        elif padded:
            self.shortcut = PaddedShortcut(out_channels - in_channels)
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))
        self.drop_path = stochastic_depth_layer(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(self.shortcut(x) + self.drop_path(out))


def cifar_resnet(depth: int, channels: tuple[int, int, int, int], drop_path: float,
                 padded: bool) -> tuple[nn.Module, int]:
    """A stem of channels[0], then three stages of (depth - 2) / 6 basic blocks of channels[1:] (strides 1, 2, 2)."""
    blocks_per_stage = (depth - 2) // 6
    layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 3, 1, 1, bias=False), nn.BatchNorm2d(channels[0]),
                               nn.ReLU(inplace=True)]
    total, index = 3 * blocks_per_stage, 0
    for stage in range(3):
        for i in range(blocks_per_stage):
            layers.append(BasicBlock(channels[stage] if i == 0 else channels[stage + 1], channels[stage + 1],
                                     2 if stage > 0 and i == 0 else 1, drop_path * index / max(1, total - 1), padded))
            index += 1
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), channels[3]


def _register_cifar_resnet(name: str, depth: int, channels: tuple[int, int, int, int], padded: bool) -> None:
    @register_model(name, has_blocks=True)
    def build(num_classes: int, image_size: int, small_input: bool, dropout: float, drop_path: float) -> Classifier:
        backbone, features = cifar_resnet(depth, channels, drop_path, padded)
        return Classifier(backbone, features, num_classes, dropout)


for _depth in (20, 32, 44, 56, 110):
    _register_cifar_resnet(f"resnet{_depth}", _depth, (16, 16, 32, 64), padded=True)
for _depth in (8, 32):
    _register_cifar_resnet(f"resnet{_depth}x4", _depth, (32, 64, 128, 256), padded=False)


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
