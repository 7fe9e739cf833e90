"""A 12-trial RandAugment (n, m) search on a CIFAR-10 subset, without a pruner and with the median pruner.

    python benchmarks/search.py [--trials 12] [--subset 10000] [--epochs 15] [--out DIR] [--quick]

LeNet-5 (experiment=cifar10_lenet5) on `--subset` training images (10% held out for validation), searched by
hparams_search=randaug_optuna with TPE's seed 0 in both searches, so both draw the same first trials. Each search is
timed whole. The last line is one JSON object: each search's wall time, best validation top-1, its trial's
test top-1 and (n, m), the trials pruned, and `time_saved` (the search without a pruner's time / the pruned one's).
--quick: 2 trials of 2 epochs on a small generated image-folder tree (the same code path in seconds, for the tests).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import ROOT as CIFAR10, write_tree  # noqa: E402  (the CIFAR-10 tree, and the small one of --quick)


def search(out: Path, name: str, args: argparse.Namespace, pruner: str) -> dict:
    sweep = out / name
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cvrun", "train", "-m", "hparams_search=randaug_optuna",
                    "experiment=cifar10_lenet5", f"dataset.root={args.data}", f"dataset.subset={args.subset}",
                    f"trainer.epochs={args.epochs}", f"hydra.sweeper.n_trials={args.trials}",
                    f"hparams_search.pruner={pruner}", "trainer.progress=false", f"hydra.sweep.dir={sweep}"],
                   cwd=out, check=True, capture_output=True)
    seconds = time.perf_counter() - started
    best = json.loads((sweep / "best.json").read_text())
    rows = (sweep / "summary.csv").read_text().splitlines()
    statuses = Counter(line.split(",")[3] for line in rows[1:])
    return {"pruner": pruner, "wall_seconds": round(seconds, 1), "best_val_acc1": best["best_val_acc1"],
            "its_test_acc1": best["test_acc1"], "best_params": best["overrides"], "trials": dict(statuses)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--subset", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="2 trials on a small generated tree: seconds")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="cvrun-search-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    args.data = CIFAR10
    if args.quick:
        args.data, args.trials, args.subset, args.epochs = write_tree(out / "tree", 16), 2, 30, 2
    plain = search(out, "no_pruner", args, "none")
    print(json.dumps(plain), flush=True)
    pruned = search(out, "median_pruner", args, "median")
    print(json.dumps(pruned), flush=True)
    print(json.dumps({"no_pruner": plain, "median_pruner": pruned,
                      "time_saved": round(plain["wall_seconds"] / pruned["wall_seconds"], 2)}))


if __name__ == "__main__":
    main()
