"""cvrun's trainer against a bare PyTorch training loop, on the CPU.

    python benchmarks/loop.py [--repeats 3] [--quick]

Same model (lenet5, resnet18 with the CIFAR stem), same in-memory images (generated
shapes at 32 px), same DataLoader (cvrun's make_loader, no augmentation), same
optimiser (SGD, nesterov, as optim=sgd builds it). The bare loop is what one writes
by hand: normalise, forward, cross-entropy, zero_grad, backward, step, nothing else.
cvrun's side is regime=scratch through the one trainer with its defaults (schedule,
metrics on the device, divergence check, EMA off, progress bar off), without a
validation split.

Throughput is training images per second over the training steps of an epoch (the
trainer's `train_images_per_second`; the same span timed around the bare loop), best
epoch after the first, best of --repeats alternating runs: this machine's speed drifts
by 10-20% from run to run, and the best rate is the one least disturbed. The last line is one JSON
object; `loop_ratio` = the smaller of cvrun / bare over the two models. --quick: lenet5 on
128 images, two epochs, one repeat (the same code path in seconds, for the tests).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cvrun.augment import build_train_transform
from cvrun.commands import register_option_groups
from cvrun.config import TrainConfig, option_values, validate
from cvrun.data.loaders import make_loader
from cvrun.data.splits import build_splits
from cvrun.engine.events import Callback
from cvrun.engine.optim import build_optimizer
from cvrun.engine.rundir import RunFolder
from cvrun.engine.trainer import place_model
from cvrun.models import build_model
from cvrun.regimes import REGIMES

register_option_groups()  # the config's option sections are typed on their registries' schemas

# (images per epoch, epochs): enough steps for a stable rate, few enough for minutes on 2 cores
# (resnet18 trains about 30 images a second there). The first epoch of each run is not counted.
SIZES = {"lenet5": (12_800, 3), "resnet18": (512, 3)}
# --quick: the same loops in seconds; resnet18 alone costs seconds of CPU for a handful of images.
QUICK_SIZES = {"lenet5": (128, 2)}
MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def config(model: str, epochs: int, images: int):
    from omegaconf import OmegaConf

    # The schema's defaults as plain values, so that shapes' own keys (train_size, test_size) may be given.
    return validate(OmegaConf.merge(OmegaConf.to_container(OmegaConf.structured(TrainConfig)), {
        "dataset": {"name": "shapes", "image_size": 32, "train_size": images, "test_size": min(images, 128),
                    "val_fraction": 0.0, "mean": MEAN, "std": STD},
        "model": {"name": model}, "aug": option_values("aug", "none"),
        "trainer": {"epochs": epochs, "batch_size": 128, "progress": False, "device": "cpu", "num_workers": 0}}),
        TrainConfig)


def build(cfg):
    """Model and training loader of a config, as regime=scratch builds them (benchmarks/gpu.py: CIFAR-10 ones)."""
    torch.manual_seed(0)
    data = build_splits(cfg.dataset)
    model = build_model(cfg.model, data.num_classes, data.image_size)
    transform = build_train_transform(cfg.aug, data.image_size, cfg.dataset.mean)
    loader = make_loader(data.train, data.image_size, cfg.trainer.batch_size, train=True, seed=cfg.trainer.seed,
                         transform=transform, num_workers=cfg.trainer.num_workers,
                         cuda=cfg.trainer.device.startswith("cuda"))
    return model, loader


def bare_rate(cfg) -> float:
    """Images per second of the hand-written loop, best epoch after the first.

    It uses the config's device, memory format, bf16 autocast and torch.compile, as one would by hand.
    """
    model, loader = build(cfg)
    device = torch.device(cfg.trainer.device)
    model = place_model(model, cfg.trainer, device)
    optimizer = build_optimizer([{"params": list(model.parameters())}], cfg.optim, device)
    dtype = torch.bfloat16 if str(cfg.trainer.precision) == "bf16" else None
    mean = torch.tensor(cfg.dataset.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(cfg.dataset.std, device=device).view(1, 3, 1, 1) * 255
    model.train()
    rates = []
    for epoch in range(cfg.trainer.epochs):
        loader.sampler.set_epoch(epoch)
        seen, started = 0, time.perf_counter()
        for images, labels in loader:
            images = (images.to(device, non_blocking=True).float() - mean) / std
            if cfg.trainer.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = F.cross_entropy(model(images).float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += labels.shape[0]
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(seen / (time.perf_counter() - started))
    return max(rates[1:])


class EpochRates(Callback):
    """Each epoch's `train_images_per_second`, as metrics.csv records it."""

    def __init__(self):
        self.rates = []

    def on_epoch_end(self, row, rows) -> None:
        self.rates.append(row["train_images_per_second"])


def cvrun_rate(cfg) -> float:
    """Images per second of regime=scratch in the trainer, best epoch after the first."""
    torch.manual_seed(0)
    rates = EpochRates()
    logging.getLogger("cvrun").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        REGIMES.get(cfg.regime.name)(cfg, RunFolder(Path(folder) / "run"), [rates]).start()
    return max(rates.rates[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: the code path in seconds")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    results = {}
    for name, (images, epochs) in (QUICK_SIZES if args.quick else SIZES).items():
        cfg = config(name, epochs, images)
        bare, ours = [], []
        for _ in range(repeats):  # alternate, so drifting machine load hits both sides alike
            bare.append(bare_rate(cfg))
            ours.append(cvrun_rate(cfg))
        results[name] = (max(bare), max(ours))
    print(f"CPU, {torch.get_num_threads()} threads, batch 128, 32 px, images per second (training steps)")
    print(f"{'model':<10} {'bare loop':>10} {'cvrun':>10} {'ratio':>7}")
    for name, (bare, ours) in results.items():
        print(f"{name:<10} {bare:>10.0f} {ours:>10.0f} {ours / bare:>7.3f}")
    ratios = {name: round(ours / bare, 3) for name, (bare, ours) in results.items()}
    print(json.dumps({"loop_ratio": min(ratios.values()), **{f"{k}_ratio": v for k, v in ratios.items()},
                      **{f"{k}_bare_images_per_second": round(v[0]) for k, v in results.items()},
                      **{f"{k}_cvrun_images_per_second": round(v[1]) for k, v in results.items()}}))


if __name__ == "__main__":
    main()
