"""`cvrun train -m ... trainer.seeds=N`: every setting of the sweep over seeds 0 to N-1.

A rewrite of the command line before anything reads it: `trainer.seeds=5` becomes `trainer.seed=0,1,2,3,4`,
so the sweep's job folders, summary.csv and `cvrun compare` see trainer.seed like any swept key.
"""

from __future__ import annotations

from cvrun.errors import UserError
from cvrun.overrides import override_args

SEEDS_KEY = "trainer.seeds"


def expand_seeds(args: list[str]) -> list[str]:
    overrides = override_args(args) or []
    given = [arg for arg in overrides if arg.split("=", 1)[0].lstrip("+~") == SEEDS_KEY]
    if not given:
        return args
    if len(given) > 1:
        raise UserError(f"{SEEDS_KEY} is given {len(given)} times; give it once (trainer.seeds=5: seeds 0-4)")
    count = given[0].split("=", 1)[1] if "=" in given[0] else ""
    if not count.isdigit() or int(count) < 1:
        raise UserError(f"{SEEDS_KEY} must be a positive integer (how many seeds: trainer.seeds=5 runs seeds 0-4), "
                        f"got {count or 'nothing'}")
    if "-m" not in args and "--multirun" not in args:
        # One run folder holds one run; the seeds of a setting belong together in one sweep folder.
        raise UserError(f"{given[0]} is a sweep of {count} runs (seeds 0-{int(count) - 1}); add -m: "
                        f"cvrun train -m ... {given[0]}")
    if any(arg.split("=", 1)[0].lstrip("+~") == "trainer.seed" for arg in overrides):
        raise UserError(f"give {given[0]} (seeds 0-{int(count) - 1}) or trainer.seed, not both")
    seeds = "trainer.seed=" + ",".join(str(seed) for seed in range(int(count)))
    return [seeds if arg == given[0] else arg for arg in args]
