"""One epoch of CIFAR-10 training images: cvrun's loader against torchvision's ImageFolder + transforms.v2; and
one epoch of full-resolution JPEG photos at 224 px against torchvision and timm.

    python benchmarks/data.py [--workers N] [--batch-size 128] [--images N] [--photos 300] [--quick]

Both sides read the image-folder tree at $CVRUN_CIFAR10 (default ../shared/data/cifar10),
apply pad-4 random crop + horizontal flip, and hand over normalised float batches:
- baseline: torchvision.datasets.ImageFolder with v2.Compose([ToImage, RandomCrop(32, padding=4),
  RandomHorizontalFlip, ToDtype(float32, scale=True), Normalize]) in a DataLoader;
- cvrun: build_splits (dataset.cache=auto, so decoded once into memory), the `basic` policy's
  OpenCV/NumPy ops in make_loader, and the trainer's Normalize on each uint8 batch.
Same workers (cvrun's automatic choice for files on this machine unless --workers), same batch
size, shuffled; two epochs each, the second timed, so caches count. The cvrun row's start-up
(listing and decoding the files once) is shown apart. The last line is one JSON object with
`data_speedup` = baseline seconds / cvrun seconds for the timed epoch.

The 224 px case: --photos generated 1000x750 JPEG photos (smooth colour fields with shapes and texture, quality
90, two classes) in a temporary folder, no cache, one process each (no loader workers, one OpenCV and one torch
thread), batch 32 (--quick: 8), one epoch each after all files were read once (so each finds them in the page cache):
- torchvision: ImageFolder (PIL) + v2.Compose([ToImage, RandomResizedCrop(224, antialias=True),
  RandomHorizontalFlip, ToDtype(float32, scale=True), Normalize]);
- timm: create_loader on timm's ImageDataset, is_training, RandomResizedCrop + flip (color_jitter=0: the same
  work as the others), no prefetcher;
- cvrun: build_splits (image_size=224, cache=none: JPEGs decoded at 1/2 scale where the stored 256 px shorter
  side allows), aug=basic (random resized crop + flip drawn at the stored resolution), make_loader, Normalize.
The JSON line adds `speedup_224_vs_torchvision` and `speedup_224_vs_timm` (images/s ratios).

--quick: 256 images of a small generated image-folder tree in a temporary folder, batch 64, no workers, and
24 photos for the 224 px case (the same code paths in seconds, for the tests; it needs no CIFAR-10).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from torchvision import datasets
from torchvision.transforms import v2

from cvrun.augment import build_train_transform
from cvrun.commands import register_option_groups
from cvrun.config import DatasetConfig, option_values, typed_option
from cvrun.data.loaders import file_workers, make_loader
from cvrun.data.splits import build_splits
from cvrun.engine.evaluate import Normalize

register_option_groups()  # the config's option sections are typed on their registries' schemas

ROOT = Path(os.environ.get("CVRUN_CIFAR10", Path(__file__).resolve().parents[1].parent / "shared/data/cifar10"))
MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def timed_second_epoch(loader, finish_batch) -> float:
    for epoch in range(2):
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        started = time.perf_counter()
        for images, _ in loader:
            finish_batch(images)
    return time.perf_counter() - started


def write_tree(root: Path, per_class: int) -> Path:
    """A small CIFAR-10-like image-folder tree (two classes of 32 px PNGs) for --quick."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            for index in range(per_class):
                cv2.imwrite(str(root / split / name / f"{index}.png"), rng.integers(0, 256, (32, 32, 3), np.uint8))
    return root


def torchvision_epoch(root: Path, workers: int, batch_size: int, images: int | None) -> float:
    transform = v2.Compose([v2.ToImage(), v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(),
                            v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])
    dataset = datasets.ImageFolder(str(root / "train"), transform=transform)
    if images:
        dataset = Subset(dataset, torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:images])
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0)
    return timed_second_epoch(loader, lambda batch: None)


def cvrun_epoch(root: Path, workers: int | None, batch_size: int, images: int | None) -> tuple[float, float, int]:
    """(seconds of the timed epoch, seconds to list and decode the files, workers used)."""
    started = time.perf_counter()
    data = build_splits(DatasetConfig(name="imagefolder", root=str(root), val_fraction=0.0, subset=images,
                                      mean=MEAN, std=STD))
    setup = time.perf_counter() - started
    transform = build_train_transform(typed_option("aug", option_values("aug", "basic")), 32, MEAN)
    loader = make_loader(data.train, 32, batch_size, train=True, seed=0, transform=transform, num_workers=workers)
    normalize = Normalize(MEAN, STD, torch.device("cpu"))
    return timed_second_epoch(loader, normalize), setup, loader.num_workers


def photo(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A photo-like image: a smooth colour field, finer texture and a few solid discs with soft edges."""
    field = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (width, height), interpolation=cv2.INTER_CUBIC)
    texture = cv2.resize(rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8), (width, height),
                         interpolation=cv2.INTER_LINEAR)
    image = cv2.addWeighted(field, 0.7, texture, 0.3, 0)
    for _ in range(6):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(image, centre, int(rng.integers(height // 20, height // 4)), colour, -1, cv2.LINE_AA)
    return image


def write_photos(root: Path, count: int, height: int = 750, width: int = 1000) -> Path:
    """`count` JPEG photos in train/<class>/ (two classes) and one per class in test/."""
    rng = np.random.default_rng(0)
    for split, per_class in (("train", (count + 1) // 2), ("test", 1)):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            for index in range(per_class):
                cv2.imwrite(str(root / split / name / f"{index}.jpg"), photo(height, width, rng),
                            [cv2.IMWRITE_JPEG_QUALITY, 90])
    for path in sorted(root.rglob("*.jpg")):
        path.read_bytes()  # into the page cache, for every loader alike
    return root


def images_per_second(loader, finish_batch) -> float:
    """One epoch's images over its seconds (timm's training loader drops a last partial batch)."""
    started, seen = time.perf_counter(), 0
    for images, _ in loader:
        finish_batch(images)
        seen += len(images)
    return seen / (time.perf_counter() - started)


def torchvision_224(root: Path, batch_size: int) -> float:
    """Images/s of torchvision's ImageFolder + transforms.v2 (PIL decoding) at 224 px."""
    transform = v2.Compose([v2.ToImage(), v2.RandomResizedCrop(224, antialias=True), v2.RandomHorizontalFlip(),
                            v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    loader = DataLoader(datasets.ImageFolder(str(root / "train"), transform=transform), batch_size=batch_size,
                        shuffle=True, num_workers=0)
    return images_per_second(loader, lambda batch: None)


def timm_224(root: Path, batch_size: int) -> float:
    """Images/s of timm's create_loader at 224 px (its training transform without colour jitter)."""
    from timm.data import ImageDataset, create_loader

    loader = create_loader(ImageDataset(str(root / "train")), input_size=(3, 224, 224), batch_size=batch_size,
                           is_training=True, use_prefetcher=False, no_aug=False, color_jitter=0.0,
                           mean=tuple(IMAGENET_MEAN), std=tuple(IMAGENET_STD), num_workers=0)
    return images_per_second(loader, lambda batch: None)


def cvrun_224(root: Path, batch_size: int) -> float:
    """Images/s of cvrun's loader at 224 px, files decoded every time (cache=none)."""
    data = build_splits(DatasetConfig(name="imagefolder", root=str(root), image_size=224, val_fraction=0.0,
                                      cache="none", mean=IMAGENET_MEAN, std=IMAGENET_STD))
    transform = build_train_transform(typed_option("aug", option_values("aug", "basic")), 224, IMAGENET_MEAN)
    loader = make_loader(data.train, 224, batch_size, train=True, seed=0, transform=transform, num_workers=0)
    normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD, torch.device("cpu"))
    return images_per_second(loader, normalize)


def photos_224(count: int, batch_size: int, scratch: Path) -> dict[str, float]:
    """Images/s of each loader over the same generated photos, and cvrun's speedups."""
    root = write_photos(scratch / "photos", count)
    images = 2 * ((count + 1) // 2)
    cv2.setNumThreads(1)
    try:
        rates = {name: run(root, batch_size) for name, run in
                 (("torchvision", torchvision_224), ("timm", timm_224), ("cvrun", cvrun_224))}
    finally:
        cv2.setNumThreads(-1)
    print(f"{images} generated 1000x750 JPEG photos at 224 px, batch {batch_size}, one process each, no cache")
    print(f"{'loader':<52} {'images/s':>9}")
    for name, label in (("torchvision", "torchvision ImageFolder + transforms.v2"), ("timm", "timm create_loader"),
                        ("cvrun", "cvrun make_loader, basic policy, cache=none")):
        print(f"{label:<52} {rates[name]:>9.1f}")
    return {"speedup_224_vs_torchvision": round(rates["cvrun"] / rates["torchvision"], 2),
            "speedup_224_vs_timm": round(rates["cvrun"] / rates["timm"], 2),
            **{f"images_per_s_224_{name}": round(rate, 1) for name, rate in rates.items()}, "photos": images}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None, help="default: cvrun's choice for image files")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=None, help="a random subset (default: all 50,000)")
    parser.add_argument("--photos", type=int, default=300, help="generated JPEG photos for the 224 px case")
    parser.add_argument("--quick", action="store_true", help="256 generated images: the code path in seconds")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker; the loaders' own workers supply the parallelism
    with tempfile.TemporaryDirectory() as scratch:
        if args.quick:
            root, workers, batch_size, images = write_tree(Path(scratch) / "tree", 128), 0, 64, None
        else:
            workers = args.workers if args.workers is not None else file_workers()
            root, batch_size, images = ROOT, args.batch_size, args.images
        baseline = torchvision_epoch(root, workers, batch_size, images)
        ours, setup, _ = cvrun_epoch(root, workers, batch_size, images)
        ours_auto, _, auto_count = cvrun_epoch(root, None, batch_size, images)
        at_224 = photos_224(*((24, 8) if args.quick else (args.photos, 32)), Path(scratch))
    count = 256 if args.quick else images or 50_000
    print(f"{count} {'generated' if args.quick else 'CIFAR-10'} training images, batch {batch_size}, second epoch, "
          f"{os.cpu_count()} CPU cores")
    print(f"{'loader':<52} {'workers':>7} {'seconds':>8} {'images/s':>9}")
    for name, used, seconds in [("torchvision ImageFolder + transforms.v2 (baseline)", workers, baseline),
                                ("cvrun make_loader, basic policy, cache=auto", workers, ours),
                                ("cvrun make_loader, automatic workers", auto_count, ours_auto)]:
        print(f"{name:<52} {used:>7} {seconds:>8.2f} {count / seconds:>9.0f}")
    print(f"cvrun start-up, listing and decoding the files once: {setup:.2f} s")
    print(json.dumps({"data_speedup": round(baseline / ours, 2), "baseline_seconds": round(baseline, 3),
                      "cvrun_seconds": round(ours, 3), "cvrun_auto_workers_seconds": round(ours_auto, 3),
                      "cvrun_setup_seconds": round(setup, 3), "workers": workers, "images": count, **at_224}))


if __name__ == "__main__":
    main()
