"""Several processes, one run: `torchrun --nproc_per_node=N -m cvrun train ...`.

torchrun starts N copies of cvrun with RANK, WORLD_SIZE and LOCAL_RANK set. Rank 0
alone lets Hydra make the run folder and alone writes into it; the other ranks
run Hydra without an output folder and learn rank 0's path. Each rank trains on
its shard of every epoch's order with batch_size / N images a step, so a
recipe optimises the same way on any number of processes; metrics are summed
over the ranks, and evaluation counts every image once.

This module reads the environment without importing torch, so the command
line can consult it before anything heavy loads.
"""

from __future__ import annotations

import os
from typing import Any

from cvrun.errors import UserError

# Regimes whose work is not one DistributedDataParallel model: the reason, for the one-line refusal.
NOT_DISTRIBUTED = {
    "knn": "it takes no gradient steps",
    "noisy_student": "it runs several training runs in turn",
    "lwf": "its old output layer trains beside the model",
}


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def hydra_args(args: list[str]) -> list[str]:
    """Under torchrun: one run (no -m), and Hydra makes a folder and a log on rank 0 only."""
    if world_size() == 1:
        return args
    if "-m" in args or "--multirun" in args:
        raise UserError("torchrun trains one run over several processes; drop -m (sweep without torchrun)")
    if is_main():
        return args
    kept = [arg for arg in args if not arg.startswith(("hydra.run.dir=", "hydra.output_subdir="))]
    return [*kept, "hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=disabled"]


def start(cfg: Any, run_path: str) -> str:
    """Join the process group; return rank 0's run folder on every rank."""
    import torch
    import torch.distributed as dist

    if world_size() == 1:
        return run_path
    if cfg.regime.name in NOT_DISTRIBUTED:
        raise UserError(f"regime={cfg.regime.name} does not run under torchrun ({NOT_DISTRIBUTED[cfg.regime.name]}); "
                        "start it with cvrun train")
    if cfg.trainer.batch_size % world_size():
        raise UserError(f"trainer.batch_size={cfg.trainer.batch_size} does not split over {world_size()} processes; "
                        f"use a multiple of {world_size()}")
    use_cuda = cfg.trainer.device != "cpu" and torch.cuda.is_available()
    if cfg.trainer.sync_bn and not use_cuda:
        raise UserError("trainer.sync_bn=true needs CUDA (SyncBatchNorm runs on GPU modules only); "
                        "drop it on the CPU")
    if use_cuda:
        torch.cuda.set_device(local_rank())
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    shared = [run_path]
    dist.broadcast_object_list(shared, src=0)
    return shared[0]


def finish() -> None:
    import torch.distributed as dist

    if active():
        dist.destroy_process_group()


def active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def sum_over_ranks(*tensors: Any) -> None:
    """Add each tensor up over the ranks, in place (nothing to do in one process)."""
    import torch.distributed as dist

    if active():
        for tensor in tensors:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)


def max_over_ranks(tensor: Any) -> None:
    import torch.distributed as dist

    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)


def barrier() -> None:
    import torch.distributed as dist

    if active():
        dist.barrier()


def shard(indices: list[int], pad: bool) -> list[int]:
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
