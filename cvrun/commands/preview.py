"""`cvrun preview [aug=...] [dataset=...]`: a PNG grid of augmented training images.

One row per training image (spread over the classes): the original (as
evaluation sees it: for images above 64 px the centre crop of
dataset.crop_pct), then `draws` augmented versions drawn the way training
draws them (above 64 px, the random resized crop drawn on the image at its
stored, aspect-true resolution). With a batch
mixer (aug.mix), each column is mixed as one batch, and the captions give the
mixed target (the two largest class weights).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from cvrun.commands import run_hydra

log = logging.getLogger("cvrun")


def pick_images(labels: np.ndarray, count: int, seed: int) -> list[int]:
    """`count` indices, taking classes in turn so that every class shows up."""
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)).tolist() for c in np.unique(labels)]
    picked = []
    while len(picked) < min(count, len(labels)):
        for pool in per_class:
            if pool and len(picked) < count:
                picked.append(pool.pop())
    return picked


def describe_ops(drawn: list[tuple[str, float]], option: str) -> str:
    """Caption of one draw: the auto-augment ops and values, else the option's name."""
    valueless = {"identity", "autocontrast", "equalize", "invert"}
    parts = [op if op in valueless else f"{op} {value:.3g}" for op, value in drawn]
    return "\n".join(parts) if parts else option


def mix_column(images: list[np.ndarray], labels: list[int], mixer: Any, class_names: list[str]):
    """Run the batch mixer on one column; return the mixed images and a caption per image."""
    import torch

    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    mixed, targets = mixer(batch, torch.tensor(labels))
    if targets.ndim == 1:  # this batch was not mixed (aug.prob < 1)
        targets = torch.nn.functional.one_hot(targets, len(class_names)).float()
    out = mixed.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    captions = []
    for weights in targets:
        top = weights.topk(2)
        captions.append("\n".join(f"{class_names[int(i)]} {float(w):.2f}" for w, i in zip(*top) if w > 0.005))
    return list(out), captions


def preview(cfg: Any) -> Path:
    import cv2
    import torch
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from cvrun.augment import build_train_transform
    from cvrun.augment.mixers import build_batch_mixer
    from cvrun.config import PreviewConfig, absolute_root, validate
    from cvrun.data.loaders import TransformInput, for_sizing
    from cvrun.data.samples import Sizing
    from cvrun.data.splits import build_splits
    from cvrun.engine.rundir import RunFolder
    from cvrun.io import atomic_write_bytes
    from cvrun.report.grid import image_grid

    cfg = validate(cfg, PreviewConfig)
    absolute_root(cfg.dataset)
    run = RunFolder(Path(HydraConfig.get().runtime.output_dir))
    run.write_config(OmegaConf.to_yaml(cfg))
    data = build_splits(cfg.dataset)
    size = data.image_size
    train = data.train.with_sizing(Sizing.of(cfg.dataset))
    transform = for_sizing(build_train_transform(cfg.aug, size, cfg.dataset.mean), train.sizing)
    mixer = build_batch_mixer(cfg.aug, len(data.class_names))
    torch.manual_seed(cfg.seed)

    indices = pick_images(train.labels, cfg.images, cfg.seed)
    inputs = [TransformInput(train, i, size) for i in indices]
    originals = [train.image(i, size) for i in indices]
    labels = [int(train.labels[i]) for i in indices]
    names = [data.class_names[label] for label in labels]
    columns, column_captions = [originals], [names]
    for draw in range(cfg.draws):
        column, captions = [], []
        for row, (image, given) in enumerate(zip(originals, inputs)):
            drawn: list = []
            if transform is not None:
                image, drawn = transform.explained(given.for_transform(transform),
                                                   np.random.default_rng([cfg.seed, draw, row]))
            column.append(image)
            captions.append(describe_ops(drawn, cfg.aug.name))
        if mixer is not None:
            column, captions = mix_column(column, labels, mixer, data.class_names)
        columns.append(column)
        column_captions.append(captions)

    grid = image_grid(rows=[list(r) for r in zip(*columns)], captions=[list(c) for c in zip(*column_captions)],
                      row_labels=names, column_labels=["original"] + [f"draw {d + 1}" for d in range(cfg.draws)],
                      cell=cfg.cell)
    path = run.path / "preview.png"
    atomic_write_bytes(path, cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))[1].tobytes())
    log.info("preview of aug=%s on %s: %d images x %d draws", cfg.aug.name, cfg.dataset.name, len(indices), cfg.draws)
    print(path)
    return path


def run_app() -> int:
    return run_hydra("preview", preview)
