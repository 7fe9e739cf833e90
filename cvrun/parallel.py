"""Which process of a multi-process run this is, read from the environment without importing torch.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK. Data (each process's shard of an epoch) and the
command line (rank 0 alone makes the run folder) read them before anything heavy loads; the
process group itself is engine/distributed.py's.
"""

from __future__ import annotations

import os


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
