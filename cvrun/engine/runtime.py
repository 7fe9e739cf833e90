"""Device, precision and seeding."""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

from cvrun.engine.distributed import local_rank
from cvrun.errors import UserError


def select_device(name: str) -> torch.device:
    """auto: CUDA when present, else CPU; cuda / cuda:N fail clearly without CUDA."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and local_rank() > 0:  # under torchrun each process has its own GPU
        name = f"cuda:{local_rank()}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"trainer.device={name} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"trainer.device={name} but this machine has no CUDA device; "
                            "use trainer.device=cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"trainer.device={name} but this machine has {torch.cuda.device_count()} "
                            "CUDA device(s)")
    elif device.type != "cpu":
        raise UserError(f"trainer.device={name} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for trainer.precision, None for full precision."""
    precision = str(precision)
    if precision == "32":
        return None
    if precision == "16":
        if device.type != "cuda":
            raise UserError("trainer.precision=16 (fp16 mixed precision) needs CUDA; "
                            "use trainer.precision=bf16 or 32 on the CPU")
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
