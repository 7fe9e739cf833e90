"""Device, precision, seeding and signals."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
from typing import Any, Iterator

import numpy as np
import torch

from cvrun.parallel import local_rank
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


class Interrupted(BaseException):
    """SIGINT (Ctrl-C) or SIGTERM (a scheduler's stop) arrived; the message is the signal's name.

    A BaseException, as KeyboardInterrupt is: code that catches Exception (a logging handler writing
    train.log, a library's fallback) must not swallow it.
    """


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Inside the block SIGINT and SIGTERM raise Interrupted, wherever the run is: decoding data,
    training, writing a checkpoint, testing, plotting. Both handlers are set explicitly, as a
    shell's background job starts with SIGINT ignored."""
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set there
        yield
        return
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
