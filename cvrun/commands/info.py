"""`cvrun info model=... [dataset=...]`: size and cost of a model on a dataset's images."""

from __future__ import annotations

from typing import Any

from cvrun.commands import run_hydra


def describe(cfg: Any) -> dict:
    from cvrun.config import InfoConfig, validate
    from cvrun.data.sources import count_classes
    from cvrun.models.analysis import count_macs, receptive_field
    from cvrun.models.registry import count_parameters, create_model_for, resolve_small_input

    cfg = validate(cfg, InfoConfig)
    size = cfg.dataset.image_size
    num_classes = count_classes(cfg.dataset)
    m = cfg.model
    model = create_model_for(m, num_classes, size)
    params, trainable = count_parameters(model)
    field = receptive_field(model)
    facts = {
        "model": m.name,
        "stem": "small-input (CIFAR-style)" if resolve_small_input(m.small_input, size) else "ImageNet",
        "input": f"3 x {size} x {size} ({cfg.dataset.name})",
        "classes": num_classes,
        "parameters": f"{params:,}",
        "trainable parameters": f"{trainable:,}",
        "features (head input)": model.num_features,
        "multiply-accumulates": f"{count_macs(model, size) / 1e6:,.1f} M per image",
        "receptive field (last conv)": ("unknown (graph not traceable)" if field is None else
                                        f"{field} px" + (f" (covers the whole {size} px input)" if field >= size else "")),
    }
    width = max(map(len, facts))
    for key, value in facts.items():
        print(f"{key:<{width}}  {value}")
    return facts


def run_app() -> int:
    return run_hydra("info", describe)
