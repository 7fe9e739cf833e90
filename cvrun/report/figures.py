"""Matplotlib without a display, and PNGs written atomically (curves.png, summary.png)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from cvrun.io import atomic_write_bytes


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (servers have no display); imported only when a plot is made."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(figure: Any, path: Path, **savefig: Any) -> None:
    """Render the figure to PNG, write it with a rename (never half-written), and close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, **savefig)
    pyplot().close(figure)
    atomic_write_bytes(Path(path), buffer.getvalue())
