"""Grad-CAM (Selvaraju et al. 2017) from the last convolutional layer, with two hooks: the layer's output
and the gradient of the class score with respect to it. A dozen lines; the `grad-cam` package would add
a dependency for the same computation."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def last_conv(model: nn.Module) -> nn.Conv2d | None:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1] if convs else None


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
