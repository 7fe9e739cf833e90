"""Which process of a multi-process run this is, read from the environment without importing torch.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK. Data (each process's shard of an epoch) and the
command line (rank 0 alone makes the run folder) read them before anything heavy loads; the
process group itself is engine/distributed.py's. Tasks that SLURM starts (srun, a launcher's
multi-task job) carry SLURM's own variables instead: adopt_slurm_tasks() translates them.
"""

from __future__ import annotations

import os


DEFAULT_PORT = 29500


def adopt_slurm_tasks() -> None:
    """Several tasks of one SLURM job step, started without torchrun, become the ranks of one run: RANK,
    WORLD_SIZE and LOCAL_RANK from SLURM_PROCID, the step's task count and SLURM_LOCALID; MASTER_ADDR (the
    step's first node) and MASTER_PORT (derived from the job id, the same in every task) unless set. The tasks
    of submitit's local executor (hydra/launcher=submitit_local with tasks_per_node > 1) likewise, from its
    SUBMITIT_LOCAL_* variables, on this machine. Nothing changes under torchrun (RANK is set) or for one task."""
    env = os.environ
    if "RANK" in env:
        return
    if "SLURM_PROCID" in env:
        tasks = int(env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", "1")))
        rank_, local, job = env["SLURM_PROCID"], env.get("SLURM_LOCALID", "0"), env.get("SLURM_JOB_ID", "0")
        host = first_host(env.get("SLURM_STEP_NODELIST", env.get("SLURM_JOB_NODELIST", "localhost")))
    elif "SUBMITIT_LOCAL_GLOBALID" in env:
        tasks = int(env.get("SUBMITIT_LOCAL_NTASKS", "1"))
        rank_, local, job = env["SUBMITIT_LOCAL_GLOBALID"], env.get("SUBMITIT_LOCAL_LOCALID", "0"), \
            env.get("SUBMITIT_LOCAL_JOB_ID", "0")
        host = "127.0.0.1"
    else:
        return
    if tasks < 2:
        return
    env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"] = rank_, str(tasks), local
    env.setdefault("MASTER_ADDR", host)
    env.setdefault("MASTER_PORT", str(DEFAULT_PORT + int(job) % 10000))


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: `gpu[03-05,09],cpu1` -> `gpu03` (scontrol's expansion, first item)."""
    head, depth = "", 0
    for char in nodelist:  # the first top-level item
        if char == "," and depth == 0:
            break
        depth += {"[": 1, "]": -1}.get(char, 0)
        head += char
    if "[" not in head:
        return head
    prefix, rest = head.split("[", 1)
    ranges, suffix = rest.split("]", 1)
    return prefix + ranges.split(",")[0].split("-")[0] + suffix


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def shard(indices: list, pad: bool) -> list:
    """This rank's share of `indices`: every world_size-th item from its rank.

    pad: repeat the first items so that every rank gets as many (training steps must
    match across ranks); evaluation leaves shards uneven so no image counts twice.
    """
    size = world_size()
    if size == 1:
        return indices
    if pad and len(indices) % size:
        indices = indices + indices[: size - len(indices) % size]
    return indices[rank()::size]
