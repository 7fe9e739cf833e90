"""Image files a user names (`cvrun predict`): files, folders searched recursively, and text files listing
paths; read one by one so that a file that cannot be read becomes a recorded error, not the end of the job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from cvrun.data.loaders import to_chw
from cvrun.data.samples import IMAGE_EXTENSIONS, Sizing, list_images
from cvrun.errors import UserError

PATH_LISTS = {".txt", ".lst"}


def collect_image_paths(arguments: list[str]) -> list[str]:
    """Each argument: an image file (kept whatever its extension: a non-image is a recorded error), a folder
    (its image files, recursively, sorted) or a .txt/.lst file of paths, one a line (relative to the list)."""
    paths: list[str] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = list_images(path)
            if not found:
                raise UserError(f"{path} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
                                "name a folder of images")
            paths += found
        elif path.suffix.lower() in PATH_LISTS and path.is_file():
            lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
            paths += [str(path.parent / line) if not Path(line).is_absolute() else line for line in lines]
        elif path.exists():
            paths.append(str(path))
        else:
            raise UserError(f"{path} does not exist; name image files, folders of images or a .txt list of paths")
    return paths


class ImageFiles(Dataset):
    """(uint8 CHW image as evaluation sees it at `sizing`, error message or ""); an unreadable file gives a zero
    image. Images above 64 px keep their aspect: the centre crop of the shorter side resized (samples.Sizing)."""

    def __init__(self, paths: list[str], sizing: Sizing):
        self.paths, self.sizing = paths, sizing

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        image = self.sizing.read(self.paths[index])
        if image is None:
            size = self.sizing.image_size
            return torch.zeros(3, size, size, dtype=torch.uint8), "not an image OpenCV can read"
        return to_chw(self.sizing.evaluate(image)), ""


def image_file_loader(paths: list[str], size: int, batch_size: int, num_workers: int,
                      sizing: Sizing | None = None) -> DataLoader[Any]:
    """sizing: the run's dataset.crop_pct, interpolation and stored_size; None: their defaults at `size`."""
    return DataLoader(ImageFiles(paths, sizing or Sizing(size)), batch_size=batch_size, num_workers=num_workers,
                      shuffle=False)

