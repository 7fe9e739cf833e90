"""What `cvrun info` reports: parameters, multiply-accumulates, receptive field."""

from __future__ import annotations

import torch
import torch.fx
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_macs(model: nn.Module, image_size: int) -> int:
    """Multiply-accumulates of one forward pass on one image (torch's FLOP counter / 2)."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, image_size, image_size))
    model.train(was_training)
    return counter.get_total_flops() // 2


def receptive_field(model: nn.Module) -> int | None:
    """Receptive field, in input pixels, of the last convolution's output.

    Traces the model's graph with torch.fx and propagates (size, jump) through
    convolutions and pools; an elementwise op (a residual add) takes the
    largest field of its inputs. Global pools (squeeze-excite gates) are left
    out: they see everything but carry no spatial detail. None when the graph
    cannot be traced.
    """
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - untraceable models simply have no answer
        return None
    modules = dict(model.named_modules())
    field: dict[str, tuple[int, int]] = {}  # node name -> (size, jump)
    last_conv = None
    for node in graph.nodes:
        inputs = [field[a.name] for a in node.all_input_nodes if a.name in field]
        if node.op == "placeholder":
            field[node.name] = (1, 1)
            continue
        if not inputs:
            continue
        size, jump = max(inputs)
        module = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear, nn.Flatten)):
            continue
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            kernel, stride, dilation = (_first(getattr(module, k, 1)) for k in ("kernel_size", "stride", "dilation"))
            size, jump = size + (kernel - 1) * dilation * jump, jump * stride
            if isinstance(module, nn.Conv2d):
                last_conv = (size, jump)
        field[node.name] = (size, jump)
    return None if last_conv is None else last_conv[0]


def _first(value) -> int:
    return value[0] if isinstance(value, (tuple, list)) else int(value)
