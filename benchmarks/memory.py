"""Peak memory of a training epoch over tar shards (dataset=shards) larger than a RAM cache would want.

    python benchmarks/memory.py [--images 200000] [--workers 2] [--quick]

Generates --images tiny images (32 x 32 PNG, 10 classes, each its own brightness) and writes them as shards
of 10,000 with `cvrun shard`'s writer; then, in a fresh process, indexes the shards and trains a linear model
for one epoch through cvrun's loader (dataset=shards, the seeded sampler, --workers loader processes). That
process reports its peak resident memory (getrusage's ru_maxrss) and that of its largest loader worker
(RUSAGE_CHILDREN); `peak_rss_mb` is the process's peak plus --workers times the worker's, a bound on what all of
them held at once (workers share pages with the parent, which each counts again). `decoded_mb` is what the
images take decoded (images x 32 x 32 x 3 bytes: a RAM cache's size), and `rss_vs_decoded` the ratio. The last
line is one JSON object. --quick: 600 images (the same code path in seconds, for the tests).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZE, CLASSES, PER_SHARD = 32, 10, 10_000


def generated(count: int, seed: int = 0):
    """(PNG bytes, extension, label) of `count` images: class c's pixels around 20 + 22 c, with noise."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    for index in range(count):
        label = index % CLASSES
        image = np.clip(rng.normal(20 + 22 * label, 12, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
        yield cv2.imencode(".png", image)[1].tobytes(), "png", label


def write(folder: Path, images: int) -> dict[str, str]:
    from cvrun.commands.shard import shard_pattern, write_split

    test_images = max(images // 10, CLASSES)
    folder.mkdir(parents=True)
    patterns = {}
    for split, count, seed in (("train", images, 0), ("test", test_images, 1)):
        shards = write_split(folder, split, generated(count, seed), PER_SHARD)
        patterns[split] = shard_pattern(folder, split, shards)
    return patterns


def epoch(train: str, test: str, workers: int, cache_dir: str) -> dict:
    """One epoch of a linear model over the shards; run in a process of its own, so ru_maxrss is the epoch's."""
    import torch
    import torch.nn.functional as F
    from omegaconf import OmegaConf

    from cvrun.commands import register_option_groups
    from cvrun.config import TrainConfig, validate
    from cvrun.data.loaders import make_loader
    from cvrun.data.splits import build_splits

    register_option_groups()
    torch.set_num_threads(1)
    cfg = validate(OmegaConf.merge(OmegaConf.to_container(OmegaConf.structured(TrainConfig)), {
        "dataset": {"name": "shards", "shards": train, "test_shards": test, "image_size": SIZE, "cache": "none",
                    "val_fraction": 0.0, "cache_dir": cache_dir}}), TrainConfig)
    started = time.perf_counter()
    data = build_splits(cfg.dataset)
    indexed = time.perf_counter() - started
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # torch and cvrun imported, shards indexed
    loader = make_loader(data.train, SIZE, 256, train=True, seed=0, num_workers=workers)
    model = torch.nn.Linear(SIZE * SIZE * 3, data.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    seen, correct, started = 0, 0, time.perf_counter()
    for images, labels in loader:
        logits = model((images.float() / 255 - 0.5).flatten(1))
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(labels)
        correct += int((logits.argmax(1) == labels).sum())
    seconds = time.perf_counter() - started
    del loader  # its workers end, so RUSAGE_CHILDREN counts them
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"images": len(data.train), "seen": seen, "index_seconds": round(indexed, 1),
            "epoch_seconds": round(seconds, 1), "images_per_second": round(seen / seconds),
            "train_acc1": round(100 * correct / seen, 1), "rss_before_epoch_mb": round(before),
            "process_rss_mb": round(own), "worker_rss_mb": round(worker)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--epoch", nargs=3, metavar=("TRAIN", "TEST", "CACHE_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epoch:
        print(json.dumps(epoch(*args.epoch[:2], args.workers, args.epoch[2])))
        return
    images = 600 if args.quick else args.images
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        started = time.perf_counter()
        patterns = write(folder / "shards", images)
        written = time.perf_counter() - started
        run = subprocess.run([sys.executable, __file__, "--workers", str(args.workers), "--epoch", patterns["train"],
                              patterns["test"], str(folder / "cache")], capture_output=True, text=True)
        if run.returncode:
            sys.exit(run.stderr[-3000:])
        figures = json.loads(run.stdout.splitlines()[-1])
        shard_bytes = sum(f.stat().st_size for f in (folder / "shards").glob("*.tar"))
    decoded = images * SIZE * SIZE * 3 / 2**20
    peak = figures["process_rss_mb"] + args.workers * figures["worker_rss_mb"]
    print(f"{images} images of {SIZE}x{SIZE} in shards of {PER_SHARD} ({shard_bytes / 2**20:.0f} MB, written in "
          f"{written:.0f} s); indexed in {figures['index_seconds']} s ({figures['rss_before_epoch_mb']} MB resident "
          f"then, torch included); one epoch of a linear model with {args.workers} loader workers: "
          f"{figures['images_per_second']} images/s; peak RSS {figures['process_rss_mb']} MB + {args.workers} x "
          f"{figures['worker_rss_mb']} MB (workers) = {peak:.0f} MB at most, against {decoded:.0f} MB of decoded "
          "images")
    print(json.dumps({**figures, "workers": args.workers, "shard_mb": round(shard_bytes / 2**20),
                      "decoded_mb": round(decoded), "peak_rss_mb": round(peak),
                      "rss_vs_decoded": round(peak / decoded, 3)}))


if __name__ == "__main__":
    main()
