"""Images above 64 px keep their aspect: stored with a bounded shorter side (JPEGs decoded reduced where that
allows), evaluated as torchvision's Resize + CenterCrop; small images keep the square they always had."""

import cv2
import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from benchmarks.data import photo as benchmark_photo
from cvrun.data.samples import RaggedImages, Samples, Sizing, fit_size, jpeg_reduction

# (height, width): landscape and portrait 4:3, 3:2, a square, a 3:1 panorama, one just above the stored side.
ASPECTS = [(480, 640), (640, 480), (400, 600), (300, 300), (240, 720), (257, 1000)]
TORCHVISION_MODES = {"nearest": v2.InterpolationMode.NEAREST, "bilinear": v2.InterpolationMode.BILINEAR,
                     "bicubic": v2.InterpolationMode.BICUBIC}


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """The benchmark's photo-like RGB image (a smooth colour field, texture, soft-edged discs), from `seed`."""
    return benchmark_photo(height, width, np.random.default_rng(seed))


def torchvision_eval(image: np.ndarray, size: int, crop_pct: float, interpolation: str) -> np.ndarray:
    resize_side = int(size / crop_pct)
    transform = v2.Compose([v2.Resize(resize_side, interpolation=TORCHVISION_MODES[interpolation], antialias=True),
                            v2.CenterCrop(size)])
    return transform(torch.from_numpy(image).permute(2, 0, 1)).permute(1, 2, 0).numpy()


def coordinates(height: int, width: int) -> np.ndarray:
    """Each pixel holds its own column (red, plus 256 x the blue's low half) and row (green, 256 x blue's high)."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([cols % 256, rows % 256, cols // 256 + 16 * (rows // 256)], axis=-1).astype(np.uint8)


def source_of(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) each pixel of a resized `coordinates` image was taken from."""
    image = image.astype(int)
    return image[..., 1] + 256 * (image[..., 2] // 16), image[..., 0] + 256 * (image[..., 2] % 16)


@pytest.mark.parametrize("height, width", ASPECTS)
def test_evaluation_is_torchvisions_resize_and_centre_crop(height, width):
    # nearest: every output pixel names its source, so sizes and offsets compare to the pixel. Where the exact
    # source coordinate is a whole number (a rounding tie), float32 (torch) and OpenCV may take neighbours.
    grid = coordinates(height, width)
    for crop_pct in (0.875, 1.0, 0.95):
        ours = source_of(Sizing(224, crop_pct=crop_pct, interpolation="nearest").evaluate(grid))
        theirs = source_of(torchvision_eval(grid, 224, crop_pct, "nearest"))
        for axis_ours, axis_theirs in zip(ours, theirs):
            assert np.abs(axis_ours - axis_theirs).max() <= 1 and (axis_ours == axis_theirs).mean() > 0.97, crop_pct
    image = photo(height, width)
    for interpolation in ("bilinear", "bicubic"):
        ours = Sizing(224, interpolation=interpolation).evaluate(image)
        difference = np.abs(ours.astype(int) - torchvision_eval(image, 224, 0.875, interpolation).astype(int))
        assert ours.shape == (224, 224, 3) and difference.mean() < 1.0 and np.percentile(difference, 99) <= 4


@pytest.mark.parametrize("height, width", ASPECTS)
def test_stored_images_keep_their_aspect_with_the_shorter_side_bounded(height, width):
    sizing = Sizing(224)  # stored side image_size / crop_pct = 256
    stored = sizing.store(photo(height, width))
    short, long = sorted(stored.shape[:2])
    assert short == min(256, height, width)  # shrunk to 256, never enlarged
    assert abs(long / short - max(height, width) / min(height, width)) < 1 / short + 1e-9  # not squashed
    assert (stored.shape[0] <= stored.shape[1]) == (height <= width)
    assert Sizing(224, stored_size=300).store(photo(height, width)).shape[:2] == \
        ((min(300, height), int(min(300, height) * width / height)) if height <= width
         else (int(min(300, width) * height / width), min(300, width)))


def test_small_images_are_squashed_to_the_square_as_before():
    image = photo(45, 60)
    for size in (32, 64):
        sizing = Sizing(size, crop_pct=0.5, interpolation="nearest")  # the keys change nothing at or below 64 px
        assert np.array_equal(sizing.store(image), fit_size(image, size))
        assert np.array_equal(sizing.evaluate(sizing.store(image)), fit_size(image, size))


@pytest.mark.parametrize("height, width, factor", [(1000, 1500, 2), (600, 800, 2), (1100, 2000, 4), (500, 500, 1)])
def test_large_jpegs_are_decoded_reduced_when_the_stored_side_allows(tmp_path, height, width, factor):
    path = str(tmp_path / "photo.jpg")
    cv2.imwrite(path, cv2.cvtColor(photo(height, width), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert jpeg_reduction(path, 256) == factor
    sizing = Sizing(224)
    reduced = sizing.read(path)
    full = sizing.store(cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB))
    assert reduced.shape == full.shape
    assert np.abs(reduced.astype(int) - full.astype(int)).mean() < 2.0  # the DCT-scaled decode: a close copy
    png = str(tmp_path / "photo.png")
    cv2.imwrite(png, np.zeros((1000, 1000, 3), np.uint8))
    assert jpeg_reduction(png, 256) == 1 and sizing.read(str(tmp_path / "missing.jpg")) is None


def test_ragged_images_index_take_and_join_like_arrays():
    images = [photo(h, w, seed) for seed, (h, w) in enumerate([(20, 30), (30, 20), (25, 25)])]
    ragged = RaggedImages.stack(images)
    assert len(ragged) == 3 and ragged.nbytes == sum(im.nbytes for im in images)
    assert all(np.array_equal(ragged[i], im) for i, im in enumerate(images))
    taken = ragged[np.array([2, 0])]
    assert np.array_equal(taken[0], images[2]) and np.array_equal(taken[1], images[0])
    joined = RaggedImages.concat(taken, ragged[np.array([1])])
    assert [joined[i].shape for i in range(3)] == [(25, 25, 3), (20, 30, 3), (30, 20, 3)]


def test_samples_of_large_images_serve_the_stored_image_to_training_and_the_crop_to_evaluation(tmp_path):
    paths = []
    for index, (height, width) in enumerate(ASPECTS[:3]):
        paths.append(str(tmp_path / f"{index}.png"))
        cv2.imwrite(paths[-1], cv2.cvtColor(photo(height, width, index), cv2.COLOR_RGB2BGR))
    sizing = Sizing(96, crop_pct=0.8, interpolation="bicubic")
    samples = Samples.from_paths(paths, np.arange(3)).with_sizing(sizing)
    decoded = samples.decoded(96)
    assert isinstance(decoded.images, RaggedImages)
    for index, (height, width) in enumerate(ASPECTS[:3]):
        stored = samples.stored(index, 96)
        assert min(stored.shape[:2]) == 120 and np.array_equal(decoded.stored(index, 96), stored)
        assert np.array_equal(samples.image(index, 96), sizing.evaluate(stored))
        assert samples.image(index, 96).shape == (96, 96, 3)
    assert samples.take(np.array([2])).sizing == sizing
    joined = Samples.concat(samples, decoded, 96)  # paths and decoded: both decoded, as one ragged set
    assert len(joined) == 6 and np.array_equal(joined.stored(4, 96), samples.stored(1, 96))
