"""Per-op and per-policy augmentation cost: cvrun's OpenCV/NumPy ops against torchvision.transforms.v2.

    python benchmarks/augment.py [--images 200] [--repeats 3] [--quick]

Both sides get the same images (CIFAR-10 from ../shared/data when present,
else random pixels), as uint8 HWC arrays for cvrun and uint8 CHW tensors for
torchvision, at 32 and 224 px, on one thread each. Times are microseconds per
image, best of --repeats passes. The last line is one JSON object with the
speedups (torchvision time / cvrun time); `randaug_speedup_32` and
`randaug_speedup_224` are for RandAugment(n=2, m=9). --quick: 4 random images, one pass (the same
code path in seconds, for the tests).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.transforms import v2

from cvrun.augment.auto import AutoAugment, RandAugment, TrivialAugmentWide
from cvrun.augment.ops import OPS
from cvrun.augment.policies import build_train_transform
from cvrun.augment.reference import torchvision_op
from cvrun.commands import register_option_groups
from cvrun.config import option_values, typed_option

CIFAR10_TRAIN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10" / "train"

register_option_groups()  # the config's option sections are typed on their registries' schemas


def load_images(count: int, size: int, cifar10: bool) -> list[np.ndarray]:
    paths = sorted(CIFAR10_TRAIN.rglob("*.jpg"))[::97][:count] if cifar10 and CIFAR10_TRAIN.is_dir() else []
    if len(paths) < count:
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]
    images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
    return [cv2.resize(im, (size, size), interpolation=cv2.INTER_CUBIC) for im in images]


def per_image_us(fn, inputs: list, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        for item in inputs:
            fn(item)
        best = min(best, time.perf_counter() - started)
    return 1e6 * best / len(inputs)


def measure(size: int, count: int, repeats: int, cifar10: bool) -> list[tuple[str, float, float]]:
    """(name, cvrun us/image, torchvision us/image) for every op and policy at one size."""
    arrays = load_images(count, size, cifar10)
    tensors = [torch.from_numpy(a).permute(2, 0, 1).contiguous() for a in arrays]
    rows = []
    for name, op in OPS.items():
        if op.torchvision is None:  # nothing to compare with
            continue
        value = op.value(9 / 30, size, size)  # RandAugment's value at m=9, the op's positive direction
        rows.append((name, per_image_us(lambda a: op.apply(a, value), arrays, repeats),
                     per_image_us(lambda t: torchvision_op(name, t, value), tensors, repeats)))

    def seeded(policy):
        rng = np.random.default_rng(0)
        return lambda a: policy(a, rng)

    torch.manual_seed(0)
    basic = build_train_transform(typed_option("aug", option_values("aug", "basic")), size)  # aug=basic's pipeline
    policies = [
        ("basic (pad-crop+flip)" if size <= 64 else "basic (resized crop+flip)", basic,
         v2.Compose([v2.RandomCrop(size, padding=4), v2.RandomHorizontalFlip()]) if size <= 64 else
         v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()])),
        ("randaug n=2 m=9", RandAugment(n=2, m=9), v2.RandAugment(num_ops=2, magnitude=9)),
        ("autoaug cifar10", AutoAugment("cifar10"), v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)),
        ("trivialaug", TrivialAugmentWide(), v2.TrivialAugmentWide()),
    ]
    for name, ours, theirs in policies:
        rows.append((name, per_image_us(seeded(ours), arrays, repeats), per_image_us(theirs, tensors, repeats)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="4 random images, one pass: the code path in seconds")
    args = parser.parse_args()
    images, repeats = (4, 1) if args.quick else (args.images, args.repeats)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)

    results = {}
    print(f"{'op / policy':<28}{'size':>6}{'cvrun us':>11}{'torchvision us':>16}{'speedup':>9}")
    for size in (32, 224):
        for name, ours, theirs in measure(size, images, repeats, cifar10=not args.quick):
            print(f"{name:<28}{size:>6}{ours:>11.1f}{theirs:>16.1f}{theirs / ours:>8.1f}x")
            results[f"{name.split(' ')[0]}_speedup_{size}"] = round(theirs / ours, 2)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
