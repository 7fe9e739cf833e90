"""Grad-CAM (Selvaraju et al. 2017) from the last convolutional layer, with two hooks: the layer's output
and the gradient of the class score with respect to it. A dozen lines; the `grad-cam` package would add
a dependency for the same computation."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def last_conv(model: nn.Module) -> nn.Conv2d | None:
    """The last convolution, when it makes the feature map the model pools: None for a model without one, and for
    a timm model whose last stage has none after it (a ViT's patch embedding is its only convolution: its map
    is the input's patches, not the evidence the class score rests on)."""
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not names:
        return None
    last_stage = timm_last_stage(model)
    order = [name for name, _ in model.named_modules()]
    if last_stage is not None and order.index(names[-1]) < order.index(last_stage):
        return None
    return model.get_submodule(names[-1])


def timm_last_stage(model: nn.Module) -> str | None:
    """The name of a timm model's last feature stage (its feature_info's last module), within `model`; None for a
    model that is not or holds no timm model."""
    for prefix, module in model.named_modules():
        info = getattr(module, "feature_info", None)
        if isinstance(info, list) and info and isinstance(info[-1], dict) and "module" in info[-1]:
            return f"{prefix}.{info[-1]['module']}" if prefix else info[-1]["module"]
    return None


def grad_cam(model: nn.Module, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """One heat map per image in [0, 1], at the image's size, for the given class of each image.

    The model is copied with its in-place activations made out-of-place: an in-place ReLU would overwrite
    the hooked activation before its gradient arrives.
    """
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if getattr(module, "inplace", False):
            module.inplace = False
    layer = last_conv(model)
    if layer is None:
        raise ValueError("the model has no convolutional layer")
    captured: dict[str, torch.Tensor] = {}

    def keep(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        captured["activation"] = output
        output.register_hook(lambda grad: captured.__setitem__("gradient", grad))

    handle = layer.register_forward_hook(keep)
    try:
        images = images.clone().requires_grad_(True)  # gradients flow even where the early layers are frozen
        scores = model(images).gather(1, classes[:, None]).sum()
        scores.backward()
    finally:
        handle.remove()
    weights = captured["gradient"].mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * captured["activation"]).sum(dim=1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(dim=1).clamp_min(1e-12)
    return cam / peak[:, None, None]
