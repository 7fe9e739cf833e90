"""Each op of OPS against torchvision.transforms.v2, and the plain ops' own guarantees.

Tolerances, stated once:
- EXACT ops agree with torchvision on every pixel.
- color, contrast and sharpness compute the grayscale or the blend in one
  OpenCV call: |difference| <= 1, on at most 1% of values.
- rotate, shear_x, shear_y resample with nearest neighbour. Where a pixel's
  exact source coordinate falls on a half-pixel tie (shear 0.2 puts every fifth
  row on one), which neighbour wins depends on the last bits of torch's float32
  grid and of OpenCV's fixed point (it changed between OpenCV 4 and 5). So a
  pixel may differ only where its source is such a tie, and then comes from the
  neighbouring source pixel (or the fill, at the border); every other pixel agrees.
"""

import cv2
import numpy as np
import pytest
import torch

from cvrun.augment import OPS
from cvrun.augment import ops
from cvrun.augment.reference import torchvision_op

# Ops with a torchvision reference; each must match it exactly unless it is listed as BLENDED or GEOMETRIC.
REFERENCED = {name for name, op in OPS.items() if op.torchvision is not None}
BLENDED = {"color", "contrast", "sharpness"}
GEOMETRIC = {"rotate", "shear_x", "shear_y"}
EXACT = REFERENCED - BLENDED - GEOMETRIC

VALUES = {
    "identity": [0.0], "autocontrast": [0.0], "equalize": [0.0], "invert": [0.0],
    "rotate": [9.0, -30.0, 17.5, 135.0], "shear_x": [0.09, -0.3, 0.2, 0.99], "shear_y": [0.09, -0.3, 0.2, -0.99],
    "translate_x": [4.35, -13.6, 7.0, 40.0], "translate_y": [4.35, -13.6, 7.0, -40.0],
    "brightness": [0.27, -0.9, 0.99], "color": [0.27, -0.9, 0.99], "contrast": [0.27, -0.9, 0.99],
    "sharpness": [0.27, -0.9, 0.99], "posterize": [8, 7, 4, 2, 0], "solarize": [255.0, 178.5, 100.0, 0.0],
}


def images(size: int):
    """Noise, a low-contrast image and a smooth gradient: different histograms and edges."""
    rng = np.random.default_rng(size)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    gradient = np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1),
                         np.full((size, size), 90, np.float32)], axis=-1).astype(np.uint8)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            rng.integers(60, 140, (size, size, 3), dtype=np.uint8), gradient]


def reference(op, image, value):
    chw = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    return torchvision_op(op, chw, value).permute(1, 2, 0).numpy()


def test_ops_cover_randaugment_and_autoaugment():
    assert REFERENCED == set(OPS) == set(VALUES) == {
        "identity", "autocontrast", "equalize", "solarize", "posterize", "brightness", "translate_x", "translate_y",
        "invert", "color", "contrast", "sharpness", "rotate", "shear_x", "shear_y"}



@pytest.mark.parametrize("size", [32, 33, 96])
@pytest.mark.parametrize("op", sorted(EXACT | BLENDED))
def test_colour_and_shift_ops_match_torchvision(op, size):
    for image in images(size):
        for value in VALUES[op]:
            ours = OPS[op](image, value)
            assert ours.shape == image.shape and ours.dtype == np.uint8
            difference = np.abs(ours.astype(int) - reference(op, image, value).astype(int))
            if op in EXACT:
                assert difference.max() == 0, (op, value)
            else:
                assert difference.max() <= 1 and (difference > 0).mean() <= 0.01, (op, value)


def coordinate_image(size: int) -> np.ndarray:
    """Red = column, green = row, blue = 255: every pixel says where it came from; fill (blue 0) stands out."""
    rows, cols = np.mgrid[0:size, 0:size]
    return np.stack([cols, rows, np.full_like(cols, 255)], axis=-1).astype(np.uint8)


def on_half_pixel_tie(op: str, value: float, size: int) -> np.ndarray:
    """Where the exact (float64) source coordinate of an output pixel lies on a half-pixel tie, in either axis.

    The maps are the ops' definitions, written out here: rotate turns about the image centre; shear_x moves
    row y by value * (y + 0.5) pixels (torchvision shears about the top-left pixel's corner), shear_y likewise.
    """
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    if op == "rotate":
        centre = (size - 1) / 2
        inverse = cv2.invertAffineTransform(cv2.getRotationMatrix2D((centre, centre), value, 1.0))
        source_x = inverse[0, 0] * x + inverse[0, 1] * y + inverse[0, 2]
        source_y = inverse[1, 0] * x + inverse[1, 1] * y + inverse[1, 2]
    elif op == "shear_x":
        source_x, source_y = x + value * (y + 0.5), y
    else:
        source_x, source_y = x, y + value * (x + 0.5)
    return (np.abs(source_x % 1 - 0.5) < 1e-3) | (np.abs(source_y % 1 - 0.5) < 1e-3)


@pytest.mark.parametrize("size", [32, 33, 96])
@pytest.mark.parametrize("op", sorted(GEOMETRIC))
def test_geometric_ops_match_torchvision_up_to_ties(op, size):
    image = coordinate_image(size)
    for value in VALUES[op]:
        ties = on_half_pixel_tie(op, value, size)
        ours = OPS[op](image, value).astype(int)
        theirs = reference(op, image, value).astype(int)
        differs = (ours != theirs).any(axis=-1)
        assert not (differs & ~ties).any(), (op, value, np.argwhere(differs & ~ties)[:3])
        both_sampled = (ours[..., 2] == 255) & (theirs[..., 2] == 255)
        neighbours = np.abs(ours[..., :2] - theirs[..., :2]).max(axis=-1) <= 1
        assert (neighbours | ~both_sampled)[differs].all(), (op, value)
        for noise in images(size)[:1]:  # real content differs at the same ties only
            assert not ((OPS[op](noise, value) != reference(op, noise, value)).any(axis=-1) & ~ties).any()


def test_ops_keep_shape_and_dtype_on_non_square_images():
    image = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    for op, values in VALUES.items():
        out = OPS[op](image, values[0])
        assert out.shape == image.shape and out.dtype == np.uint8, op


def test_brightness_shift_clips_instead_of_wrapping_around():
    image = np.array([[[0, 5, 128], [200, 250, 255]]], dtype=np.uint8)
    assert ops.brightness_shift(image, 20).tolist() == [[[20, 25, 148], [220, 255, 255]]]
    assert ops.brightness_shift(image, -20).tolist() == [[[0, 0, 108], [180, 230, 235]]]
    assert ops.brightness_shift(image, 300).min() == 255 and ops.brightness_shift(image, -300).max() == 0


def test_flips_and_quarter_turns_are_exact():
    image = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(ops.hflip(image), image[:, ::-1])
    assert np.array_equal(ops.vflip(image), image[::-1])
    for turns in range(4):
        assert np.array_equal(ops.rotate90(image, turns), np.rot90(image, turns)), turns


def test_pad_crop_shifts_the_image_and_fills_with_zero():
    image = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3) + 1
    out = ops.pad_crop(image, 2, 0, 0)  # shifted 2 right and down
    assert out.shape == image.shape
    assert (out[:2] == 0).all() and (out[:, :2] == 0).all()
    assert np.array_equal(out[2:, 2:], image[:2, :2])
    assert np.array_equal(ops.pad_crop(image, 2, 2, 2), image)


def test_resized_crop_takes_the_box_and_resizes():
    image = np.zeros((40, 40, 3), np.uint8)
    image[10:20, 10:20] = 200
    out = ops.resized_crop(image, 10, 10, 10, 10, 32)
    assert out.shape == (32, 32, 3) and (out == 200).all()


def test_affine_from_three_points_sends_the_points_where_asked():
    image = coordinate_image(32)
    corners = np.array([[0, 0], [31, 0], [0, 31]], np.float32)
    assert np.array_equal(ops.affine_three_points(image, corners, corners), image)
    shifted = ops.affine_three_points(image, corners, corners + [3, 0])  # a pure translation by 3 px
    assert np.array_equal(shifted[:, 3:], image[:, :-3]) and (shifted[:, :3] == 0).all()


def test_perspective_with_unmoved_corners_is_identity_and_moved_corners_warp():
    image = coordinate_image(32)
    corners = np.array([[0, 0], [31, 0], [0, 31], [31, 31]], np.float32)
    assert np.array_equal(ops.perspective(image, corners, corners), image)
    warped = ops.perspective(image, corners, corners + [[4, 4], [-4, 4], [0, 0], [0, 0]])
    assert (warped[0, :, 2] == 0).all()  # the top edge moved inwards: fill above it


def test_bilinear_rotate_and_shear_keep_the_centre():
    image = coordinate_image(33)
    assert np.array_equal(ops.rotate_bilinear(image, 0.0), image)
    assert np.array_equal(ops.shear_bilinear(image, 0.0, 0.0), image)
    assert np.array_equal(ops.rotate_bilinear(image, 37.0)[16, 16], image[16, 16])
    assert np.array_equal(ops.shear_bilinear(image, 0.3, -0.2)[16, 16], image[16, 16])


def test_erase_fills_only_the_box():
    image = np.full((10, 10, 3), 7, np.uint8)
    out = ops.erase(image, 2, 3, 4, 5, np.array([1, 2, 3], np.uint8))
    assert (out[2:6, 3:8] == [1, 2, 3]).all()
    assert (out == 7).all(axis=-1).sum() == 100 - 20 and (image == 7).all()


def test_random_box_area_and_aspect_stay_in_range():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = ops.random_box(32, 32, rng, scale=(0.02, 0.33), ratio=(0.3, 3.3))
        assert 0 <= top <= 32 - h and 0 <= left <= 32 - w
        assert 0.015 * 1024 <= h * w <= 0.36 * 1024
