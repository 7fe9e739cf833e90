"""Checkpoints: written atomically, read with weights_only=True."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from cvrun.io import atomic_write_bytes
from cvrun.errors import UserError


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        # The first sentence of torch's message says what is wrong; the rest is advice about torch.load.
        reason = str(err).splitlines()[0].split(". ")[0].rstrip(".") if str(err) else type(err).__name__
        raise UserError(f"checkpoint {path} cannot be read ({reason}); it is truncated or not a "
                        "cvrun checkpoint") from None
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"checkpoint {path} is not a cvrun checkpoint (no model weights in it)")
    return state
