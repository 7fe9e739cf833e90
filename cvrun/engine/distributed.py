"""Several processes, one run: `torchrun --nproc_per_node=N -m cvrun train ...`.

torchrun starts N copies of cvrun with RANK, WORLD_SIZE and LOCAL_RANK set (cvrun/parallel.py
reads them; SLURM's tasks, started without torchrun, get them from SLURM's variables). Rank 0 alone lets Hydra make the run folder and alone writes into it; the other
ranks run Hydra without an output folder and learn rank 0's path. Each rank trains on its shard
of every epoch's order with batch_size / N images a step, so a recipe optimises the same way on
any number of processes; metrics are summed over the ranks, and evaluation counts every image once.
"""

from __future__ import annotations

from typing import Any

from cvrun.errors import UserError
from cvrun.parallel import local_rank, world_size


def start(cfg: Any, run_path: str) -> str:
    """Join the process group; return rank 0's run folder on every rank."""
    import torch
    import torch.distributed as dist

    if world_size() == 1:
        return run_path
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


def gather_from_ranks(tensor: Any) -> Any:
    """The tensor of every rank, concatenated in rank order (the tensor itself in one process); the same shape on
    every rank."""
    import torch
    import torch.distributed as dist

    if not active():
        return tensor
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor.contiguous())
    return torch.cat(gathered)


def barrier() -> None:
    import torch.distributed as dist

    if active():
        dist.barrier()
