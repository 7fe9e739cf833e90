"""ResNet-18 on CIFAR-10 on one GPU: training throughput, and time to 94% test accuracy.

    python benchmarks/gpu.py [--device cuda] [--model resnet18] [--images 50000] [--epochs 3] [--skip-speedrun]
                             [--quick]

1. Training images per second at batch 512, bf16, channels_last, basic augmentation, with and
   without torch.compile: cvrun's trainer against the bare loop of benchmarks/loop.py with the same
   settings (timm's train.py would be the named baseline where it can be installed; the lent GPU
   machines have no network, so the bare loop stands in). Best epoch after the first.
2. `cvrun train experiment=cifar10_speedrun`: its test accuracy and wall time.

Data: the image-folder tree at $CVRUN_CIFAR10 (default ../shared/data/cifar10). The last line is
one JSON object. --quick (the same code path in seconds, for the tests): LeNet-5 on a small generated tree,
two epochs, no speedrun; on a machine without CUDA it runs on the CPU, eager only (torch.compile's C++
build takes minutes there).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loop  # noqa: E402  (the bare loop and the trainer's rate, shared with benchmarks/loop.py)
from data import MEAN, ROOT, STD, write_tree  # noqa: E402  (CIFAR-10's tree and statistics, as benchmarks/data.py)

from cvrun.config import TrainConfig, option_values, validate  # noqa: E402


def config(root: Path, device: str, model: str, images: int, epochs: int, compiled: bool):
    return validate(OmegaConf.merge(OmegaConf.structured(TrainConfig), {
        "dataset": {**option_values("dataset", "cifar10"), "root": str(root), "subset": images, "val_fraction": 0.0,
                    "cache": "ram", "mean": MEAN, "std": STD},
        "model": {"name": model}, "aug": option_values("aug", "basic"),
        "trainer": {"epochs": epochs, "batch_size": 512, "precision": "bf16", "channels_last": True,
                    "compile": compiled, "device": device, "progress": False}}), TrainConfig)


def speedrun(device: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder) / "speedrun"
        subprocess.run([sys.executable, "-m", "cvrun", "train", "experiment=cifar10_speedrun",
                        f"dataset.root={ROOT}", f"trainer.device={device}", "trainer.progress=false",
                        f"hydra.run.dir={run_dir}"], check=True)
        summary = json.loads((run_dir / "summary.json").read_text())
    return {key: summary[key] for key in ("test_acc1", "wall_seconds", "epochs_run")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--skip-speedrun", action="store_true")
    parser.add_argument("--quick", action="store_true", help="LeNet-5 on a small generated tree: seconds")
    args = parser.parse_args()
    root, compile_modes = ROOT, (False, True)
    with tempfile.TemporaryDirectory() as scratch:
        if args.quick:
            root = write_tree(Path(scratch) / "tree", 32)
            args.model, args.images, args.epochs, args.skip_speedrun = "lenet5", 64, 2, True
            if not torch.cuda.is_available():
                args.device, compile_modes = "cpu", (False,)
                print("no CUDA device: --quick runs on the CPU, without torch.compile")
        rows = {}
        for compiled in compile_modes:
            cfg = config(root, args.device, args.model, args.images, args.epochs, compiled)
            rows[compiled] = (loop.bare_rate(cfg), loop.cvrun_rate(cfg))
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"{name}: {args.model}, {args.images} images, batch 512, bf16, channels_last, images per second")
    print(f"{'torch.compile':<14} {'bare loop':>10} {'cvrun':>10} {'ratio':>7}")
    for compiled, (bare, ours) in rows.items():
        print(f"{str(compiled):<14} {bare:>10.0f} {ours:>10.0f} {ours / bare:>7.3f}")
    result = {"device": name, **{f"{'compiled' if c else 'eager'}_ratio": round(ours / bare, 3)
                                 for c, (bare, ours) in rows.items()},
              **{f"{'compiled' if c else 'eager'}_{side}_images_per_second": round(v)
                 for c, (bare, ours) in rows.items() for side, v in (("bare", bare), ("cvrun", ours))}}
    if not args.skip_speedrun:
        result["speedrun"] = speedrun(args.device)
        print(f"experiment=cifar10_speedrun: test top-1 {result['speedrun']['test_acc1']}% "
              f"in {result['speedrun']['wall_seconds']} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
