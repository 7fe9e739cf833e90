"""`cvrun predict` throughput on the 10,000 CIFAR-10 test files, against `cvrun eval` on the same files.

    python benchmarks/predict.py [--run RUN_DIR] [--quick]

Without --run it first trains a LeNet-5 for one epoch on 2,000 CIFAR-10 images with dataset.cache=none, so
that eval, like predict, reads and decodes every test file. Each command is timed whole (start-up included),
best of two. Then the same with the exported model.onnx (onnxruntime). The last line is one JSON object:
images per second for each, and `predict_vs_eval` (eval's time / predict's time). --quick: a small generated
image-folder tree instead of CIFAR-10, each command once (the same code path in seconds, for the tests).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import ROOT as CIFAR10, write_tree  # noqa: E402  (the CIFAR-10 tree, and the small one of --quick)


def timed(*args: str, cwd: Path, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cvrun", *args], cwd=cwd, check=True, capture_output=True)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="a small generated tree: the code path in seconds")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cvrun-predict-bench-"))
    data, subset, repeats = (write_tree(work / "tree", 16), 32, 1) if args.quick else (CIFAR10, 2000, 2)
    run = args.run
    if run is None:
        run = work / "run"
        subprocess.run([sys.executable, "-m", "cvrun", "train", "dataset=cifar10", f"dataset.root={data}",
                        "dataset.cache=none", f"dataset.subset={subset}", "model=lenet5", "trainer.epochs=1",
                        "trainer.progress=false", f"hydra.run.dir={run}"], cwd=work, check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "cvrun", "export", str(run), "--dynamic-batch"], cwd=work, check=True,
                   capture_output=True)
    test = str(data / "test")
    images = sum(1 for p in Path(test).rglob("*") if p.is_file())
    seconds = {
        "eval": timed("eval", str(run), cwd=work, repeats=repeats),
        "predict": timed("predict", str(run), test, "--out", str(work / "p.csv"), cwd=work, repeats=repeats),
        "predict_onnx": timed("predict", str(run / "export" / "model.onnx"), test, "--out", str(work / "o.csv"),
                              cwd=work, repeats=repeats),
    }
    for name, value in seconds.items():
        print(f"{name:<13} {value:6.2f} s  {images / value:7.0f} images/s")
    print(json.dumps({**{f"{k}_images_per_second": round(images / v) for k, v in seconds.items()},
                      "images": images, "predict_vs_eval": round(seconds["eval"] / seconds["predict"], 2)}))


if __name__ == "__main__":
    main()
