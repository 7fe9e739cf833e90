"""A labelled grid of images as one uint8 RGB array (for `cvrun preview`)."""

from __future__ import annotations

import math

import cv2
import numpy as np

GAP = 4
LINE = 15  # height of one caption line, in pixels
LABEL_WIDTH = 90  # the row-label column
BACKGROUND = 255
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(canvas: np.ndarray, text: str, x: int, y: int, width: int) -> None:
    """Write `text` with its baseline at y, shrunk until it fits in `width` pixels."""
    scale = 0.4
    while scale > 0.2 and cv2.getTextSize(text, FONT, scale, 1)[0][0] > width:
        scale -= 0.05
    cv2.putText(canvas, text, (x, y), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


def image_grid(rows: list[list[np.ndarray]], captions: list[list[str]], row_labels: list[str],
               column_labels: list[str], cell: int) -> np.ndarray:
    """Cells enlarged with nearest-neighbour (pixels stay visible) to at least `cell` pixels.

    A caption may hold several lines ("\n"); the strip under each row fits the longest.
    """
    side = rows[0][0].shape[0]
    size = side * max(1, math.ceil(cell / side))
    caption_height = LINE * max(text.count("\n") + 1 for texts in captions for text in texts)
    step_x, step_y = size + GAP, size + caption_height + GAP
    top = LINE + GAP
    canvas = np.full((top + len(rows) * step_y, LABEL_WIDTH + len(rows[0]) * step_x, 3), BACKGROUND, np.uint8)
    for c, label in enumerate(column_labels):
        _text(canvas, label, LABEL_WIDTH + c * step_x, LINE - 4, size)
    for r, (images, texts) in enumerate(zip(rows, captions)):
        y = top + r * step_y
        _text(canvas, row_labels[r], 4, y + size // 2, LABEL_WIDTH - 8)
        for c, (image, text) in enumerate(zip(images, texts)):
            x = LABEL_WIDTH + c * step_x
            canvas[y:y + size, x:x + size] = cv2.resize(image, (size, size), interpolation=cv2.INTER_NEAREST)
            for line_number, line in enumerate(text.split("\n")):
                _text(canvas, line, x, y + size + (line_number + 1) * LINE - 4, size)
    return canvas
