"""Large images through the loaders: training's random resized crop drawn on the stored, aspect-true image (the box
torchvision's RandomResizedCrop draws from the same numbers), evaluation's centre crop, the caches and preview."""

import math

import cv2
import numpy as np
import pytest
import torch
from torchvision import transforms as v1

from cvrun.augment import build_train_transform
from cvrun.augment.policies import random_resized_box
from cvrun.data import cache
from cvrun.data.loaders import make_loader
from cvrun.data.samples import RaggedImages, Samples, Sizing
from tests.conftest import aug_cfg, make_cfg
from tests.data.test_samples import ASPECTS, photo


class Draws:
    """torch.empty(1).uniform_ and torch.randint answering from a list of numbers in [0, 1), as numpy's uniform
    and cvrun's randint turn them into values: torchvision's own code then draws from cvrun's numbers."""

    def __init__(self, numbers):
        self.numbers = iter(numbers)

    def empty(self, *shape, **kwargs):
        draws = self

        class Uniform:
            def uniform_(self, low, high):
                low, high = float(low), float(high)
                return torch.tensor([low + (high - low) * next(draws.numbers)], dtype=torch.float64)
        return Uniform()

    def randint(self, low, high, size):
        return torch.tensor([low + int(next(self.numbers) * (high - low))])


class Recording:
    """A numpy Generator's doubles, as cvrun's box sampling uses them (uniform and random take one each)."""

    def __init__(self, seed):
        self.rng, self.numbers = np.random.default_rng(seed), []

    def random(self):
        self.numbers.append(self.rng.random())
        return self.numbers[-1]

    def uniform(self, low, high):
        return low + (high - low) * self.random()


@pytest.mark.parametrize("height, width", [*ASPECTS, (256, 341), (30, 400)])
@pytest.mark.parametrize("scale, ratio", [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.9, 1.0), (2.0, 3.0))])
def test_random_resized_box_is_torchvisions_from_the_same_draws(height, width, scale, ratio, monkeypatch):
    """(0.9, 1) of the area at aspect 2-3 misses ten times on most shapes: torchvision's fallback box too."""
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    for seed in range(60):
        recording = Recording(seed)
        ours = random_resized_box(height, width, recording, scale, ratio)
        draws = Draws(recording.numbers)
        with monkeypatch.context() as patched:
            patched.setattr(torch, "empty", draws.empty)
            patched.setattr(torch, "randint", draws.randint)
            theirs = v1.RandomResizedCrop.get_params(image, list(scale), list(ratio))
        assert ours == tuple(theirs), (seed, ours, theirs)
        assert next(draws.numbers, None) is None  # torchvision used every number cvrun drew


def photo_samples(tmp_path, sizing, count=6, extension=".jpg"):
    paths = []
    for index in range(count):
        height, width = ASPECTS[index % len(ASPECTS)]
        paths.append(str(tmp_path / f"{index}{extension}"))
        cv2.imwrite(paths[-1], cv2.cvtColor(photo(height, width, index), cv2.COLOR_RGB2BGR))
    return Samples.from_paths(paths, np.arange(count) % 2).with_sizing(sizing)


def test_training_crops_are_drawn_on_the_stored_image_and_evaluation_sees_the_centre_crop(tmp_path):
    sizing = Sizing(96, crop_pct=0.8, interpolation="bicubic")
    samples = photo_samples(tmp_path, sizing)
    transform = build_train_transform(aug_cfg("basic"), 96)
    loader = make_loader(samples, 96, 3, train=True, seed=1, transform=transform, num_workers=0)
    assert loader.dataset.transform.steps[0].interpolation == cv2.INTER_CUBIC  # the dataset's interpolation
    batch, _ = next(iter(loader))
    assert batch.shape == (3, 3, 96, 96)
    order = list(iter(loader.sampler))
    for (index, seed), image in zip(order, batch):
        stored = samples.stored(index, 96)
        expected = loader.dataset.transform(stored, np.random.default_rng(seed))
        assert np.array_equal(image.permute(1, 2, 0).numpy(), expected)
    plain = make_loader(samples, 96, 6, train=False, seed=1, num_workers=0)
    evaluated, _ = next(iter(plain))
    assert all(np.array_equal(evaluated[i].permute(1, 2, 0).numpy(), samples.image(i, 96)) for i in range(6))


def test_the_crop_draws_the_same_box_whatever_the_shape_of_the_stored_image(tmp_path):
    """A wide photo's training crops cover its whole width over many draws: the box is drawn on the stored image,
    not on a square squashed from it."""
    samples = photo_samples(tmp_path, Sizing(96), count=5)  # index 4: 240x720, stored 109x327
    stored = samples.stored(4, 96)
    assert stored.shape[:2] == (109, 327)
    lefts, rights = [], []
    for seed in range(200):
        top, left, height, width = random_resized_box(*stored.shape[:2], np.random.default_rng(seed))
        lefts.append(left)
        rights.append(left + width)
    assert min(lefts) < 20 and max(rights) > 307 and max(w for w in np.subtract(rights, lefts)) <= 327


def test_transforms_that_do_not_crop_get_the_evaluation_square(tmp_path):
    samples = photo_samples(tmp_path, Sizing(96), count=2)
    seen = []

    def record(image, rng):
        seen.append(image.shape)
        return image
    loader = make_loader(samples, 96, 2, train=True, seed=0, transform=(record, None), num_workers=0)
    (first, second), _ = next(iter(loader))
    assert seen == [(96, 96, 3)] * 2 and first.shape == second.shape == (2, 3, 96, 96)


@pytest.mark.parametrize("mode", ["ram", "disk"])
def test_caches_hold_large_images_at_their_stored_resolution(tmp_path, mode):
    sizing = Sizing(96, stored_size=120)
    samples = photo_samples(tmp_path, sizing)
    cached = (cache.in_ram(samples, 96) if mode == "ram" else
              cache.on_disk(samples, 96, tmp_path / "cache", "photos-train"))
    assert isinstance(cached.images, RaggedImages)
    for index in range(len(samples)):
        assert np.array_equal(cached.stored(index, 96), samples.stored(index, 96))
        assert min(cached.stored(index, 96).shape[:2]) == 120
    if mode == "disk":
        pixels, index = sorted((tmp_path / "cache").iterdir(), key=lambda p: len(p.name))
        assert pixels.name.startswith("photos-train-120side-") and index.name == pixels.stem + "-index.npy"
        again = cache.on_disk(samples.take(np.array([3, 1])), 96, tmp_path / "cache", "photos-subset")
        assert np.array_equal(again.stored(0, 96), samples.stored(3, 96))
    assert cache.fits_in_ram([samples], 96)


def test_preview_shows_the_centre_crop_and_crops_drawn_on_the_stored_photo(tmp_path):
    from cvrun.cli import main

    for split, count in (("train", 3), ("test", 1)):
        for name in ("wide", "tall"):
            (tmp_path / "photos" / split / name).mkdir(parents=True)
            for index in range(count):
                height, width = (240, 720) if name == "wide" else (640, 480)
                cv2.imwrite(str(tmp_path / "photos" / split / name / f"{index}.jpg"), photo(height, width, index))
    code = main(["preview", "dataset=imagefolder", f"dataset.root={tmp_path / 'photos'}", "dataset.image_size=72",
                 "dataset.crop_pct=1.0", "dataset.interpolation=bicubic", "aug=basic", "images=2", "draws=2",
                 f"hydra.run.dir={tmp_path / 'run'}"])
    assert code == 0
    grid = cv2.imread(str(tmp_path / "run" / "preview.png"))
    assert grid is not None and grid.shape[0] > 2 * 96 and grid.shape[1] > 3 * 96


def test_the_dataset_keys_reach_the_sizing():
    cfg = make_cfg(dataset={"name": "imagefolder", "root": "x", "image_size": 160, "crop_pct": 0.9,
                            "interpolation": "bicubic", "stored_size": 200}).dataset
    sizing = Sizing.of(cfg)
    assert (sizing.resize_side, sizing.stored_side, sizing.flag) == (math.floor(160 / 0.9), 200, cv2.INTER_CUBIC)
    assert Sizing.of(make_cfg().dataset) == Sizing(32)  # the defaults


def write_photo_tree(root, per_class: int, test_per_class: int):
    """Two classes of JPEG photos in mixed aspects: 'warm' ones lean red, 'cool' ones blue."""
    for split, count in (("train", per_class), ("test", test_per_class)):
        for name, channel in (("warm", 0), ("cool", 2)):
            (root / split / name).mkdir(parents=True)
            for index in range(count):
                height, width = ASPECTS[index % len(ASPECTS)]
                image = photo(height // 3, width // 3, index + 100 * channel)
                image[..., channel] = np.maximum(image[..., channel], 200)
                cv2.imwrite(str(root / split / name / f"{index}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return root


def test_training_on_photos_of_several_aspects_at_72_px_learns(tmp_path):
    import json

    from cvrun.cli import main

    root = write_photo_tree(tmp_path / "photos", per_class=16, test_per_class=5)
    code = main(["train", "dataset=imagefolder", f"dataset.root={root}", "dataset.image_size=72",
                 "dataset.val_fraction=0", "dataset.crop_pct=0.9", "model=lenet5", "aug=basic", "trainer.epochs=3",
                 "trainer.batch_size=8", "optim.lr=0.05", "trainer.progress=false",
                 f"hydra.run.dir={tmp_path / 'run'}"])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert code == 0 and summary["status"] == "completed" and summary["test_acc1"] >= 90, summary


def test_build_splits_gives_every_split_the_dataset_sizing(tmp_path):
    from cvrun.data.splits import build_splits

    root = write_photo_tree(tmp_path / "photos", per_class=4, test_per_class=1)
    cfg = make_cfg(dataset={"name": "imagefolder", "root": str(root), "image_size": 96, "crop_pct": 0.8,
                            "interpolation": "bicubic", "stored_size": 150, "cache": "ram"}).dataset
    data = build_splits(cfg)
    assert {samples.sizing for samples in (data.train, data.val, data.test)} == {Sizing.of(cfg)}
    assert min(data.train.stored(0, 96).shape[:2]) == 150 and data.test.image(0, 96).shape == (96, 96, 3)
