"""The labelled image grid behind `cvrun preview`."""

import numpy as np

from cvrun.report.grid import GAP, LABEL_WIDTH, LINE, image_grid


def test_grid_enlarges_cells_with_nearest_and_fits_multi_line_captions():
    image = np.zeros((8, 8, 3), np.uint8)
    image[:4] = 255
    rows = [[image, image], [image, image]]
    grid = image_grid(rows, captions=[["a", "b\nc\nd"], ["e", "f"]], row_labels=["x", "y"],
                      column_labels=["original", "draw 1"], cell=30)
    size = 32  # 8 px x 4: the smallest multiple >= 30
    assert grid.shape == (LINE + GAP + 2 * (size + 3 * LINE + GAP), LABEL_WIDTH + 2 * (size + GAP), 3)
    first = grid[LINE + GAP:LINE + GAP + size, LABEL_WIDTH:LABEL_WIDTH + size]
    assert (first[:16] == 255).all() and (first[16:] == 0).all()  # no blur across the edge
