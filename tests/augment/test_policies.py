import numpy as np
import pytest

from cvrun.augment import build_train_transform
from cvrun.augment.ops import hflip, pad_crop
from cvrun.errors import UserError
from tests.conftest import aug_cfg, make_cfg


def test_pad_crop_shifts_the_image_and_fills_with_zero():
    image = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3) + 1
    out = pad_crop(image, 2, 0, 0)  # shifted 2 right and down
    assert out.shape == image.shape
    assert (out[:2] == 0).all() and (out[:, :2] == 0).all()
    assert np.array_equal(out[2:, 2:], image[:2, :2])
    assert np.array_equal(pad_crop(image, 2, 2, 2), image)


def test_hflip_mirrors_columns():
    image = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    assert np.array_equal(hflip(image), image[:, ::-1])


def test_basic_policy_keeps_size_and_is_seeded():
    small = build_train_transform(make_cfg().aug, 32)
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    a = small(image, np.random.default_rng(7))
    b = small(image, np.random.default_rng(7))
    assert a.shape == (32, 32, 3) and np.array_equal(a, b)
    large = build_train_transform(make_cfg().aug, 96)
    assert large(np.zeros((96, 96, 3), np.uint8), np.random.default_rng(0)).shape == (96, 96, 3)


def test_none_policy_and_unknown_policy():
    assert build_train_transform(aug_cfg("none"), 32) is None
    with pytest.raises(UserError, match="valid aug options"):
        build_train_transform(make_cfg(aug={"name": "sparkle"}).aug, 32)
