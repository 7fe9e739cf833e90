"""`logger=[csv,tensorboard]`: RUN_DIR/tensorboard/ through torch.utils.tensorboard.

Per epoch every metrics.csv column (step = epoch); every trainer.log_every_n_steps steps the learning
rate and the training loss (step = optimiser step); the augmented images of the first batch as an image
grid; at the end the flattened config as hparams with the final results. `tensorboard --logdir outputs`
(or a sweep's folder) shows every run side by side; a resumed run appends to its own folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cvrun.config import flatten
from cvrun.loggers.base import FINAL_METRICS, LOGGERS, Logger, TrackerConfig


@dataclass
class TensorBoardConfig(TrackerConfig):
    name: str = "tensorboard"
    images: int = 16  # augmented training images shown once, from the first batch (0: none)


@LOGGERS.register("tensorboard")
class TensorBoardLogger(Logger):
    config = TensorBoardConfig

    def __init__(self, options: Any, context: Any):
        super().__init__(options, context)
        self.writer = None
        self.written = 0  # metrics rows written by this process

    def on_run_start(self, summary: dict[str, Any]) -> None:
        if self.context.run.writes:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.context.run.path / "tensorboard"))

    def on_train_images(self, images: Any) -> None:
        if self.writer is not None and self.options.images:
            self.writer.add_image("train/augmented_images", image_grid(images[:self.options.images].cpu().numpy()),
                                  0, dataformats="HWC")

    def on_steps(self, step: int, values: dict[str, float]) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"step/{key}", value, step)

    def on_epoch_end(self, row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        """Every row this process has not written: a resumed run writes the rows before the stop again (the
        last of an interrupted epoch's may be missing; TensorBoard shows one value per step)."""
        if self.writer is None:
            return
        for earlier in rows[self.written:]:
            for key, value in earlier.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"epoch/{key}", value, earlier["epoch"])
        self.written = len(rows)
        self.writer.flush()

    def on_run_end(self, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        if self.writer is None:
            return
        from omegaconf import OmegaConf

        hparams = {key: value if isinstance(value, (int, float, str, bool)) else str(value)
                   for key, value in flatten(OmegaConf.to_container(self.context.cfg)).items()}
        results = {f"hparams/{key}": summary[key] for key in FINAL_METRICS
                   if isinstance(summary.get(key), (int, float))}
        hparams["status"] = summary["status"]
        self.writer.add_hparams(hparams, results, run_name=".")
        self.writer.close()


def image_grid(images: np.ndarray, columns: int = 8) -> np.ndarray:
    """uint8 NCHW images as one HWC grid, `columns` wide."""
    count, channels, height, width = images.shape
    rows = -(-count // columns)
    grid = np.zeros((rows * height, columns * width, channels), dtype=np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        grid[row * height:(row + 1) * height, column * width:(column + 1) * width] = image.transpose(1, 2, 0)
    return grid
