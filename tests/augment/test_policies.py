"""Augmentation options: every YAML builds, composes with the base transform, and is seeded."""

from collections import Counter

import numpy as np
import pytest
from omegaconf import OmegaConf

from cvrun.augment import OPS, POLICIES, build_train_transform
from cvrun.augment.auto import (AUTOAUGMENT_POLICIES, TORCHVISION_AUGMENT_OPS, AutoAugment, RandAugment,
                                TrivialAugmentWide, apply_ops)
from cvrun.augment.mixers import MIXERS
from cvrun.config import TrainConfig, validate
from cvrun.errors import UserError
from cvrun.paths import config_dir
from tests.conftest import aug_cfg, cli

OPTIONS = sorted(p.stem for p in (config_dir() / "aug").glob("*.yaml"))


def picture(size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_every_designed_option_has_a_yaml_and_a_policy():
    designed = {"none", "basic", "brightness", "flip", "rotate", "crop", "shear", "affine", "cutmix", "mixup",
                "randaug", "randaug_cutout", "autoaug", "trivialaug"}
    assert set(OPTIONS) == designed == set(POLICIES)
    assert set(MIXERS) == {"cutmix", "mixup"} and set(AUTOAUGMENT_POLICIES) == {"cifar10", "imagenet", "svhn"}


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("size", [32, 96])
def test_every_option_keeps_size_and_dtype_and_is_seeded(option, size):
    transform = build_train_transform(aug_cfg(option), size)
    if option == "none":
        assert transform is None
        return
    image = picture(size)
    first = transform(image, np.random.default_rng(7))
    assert first.shape == (size, size, 3) and first.dtype == np.uint8
    assert np.array_equal(first, transform(image, np.random.default_rng(7)))
    draws = [transform(image, np.random.default_rng(seed)) for seed in range(8)]
    assert any(not np.array_equal(draws[0], d) for d in draws[1:]), "the option never changes anything"


def test_policies_compose_with_the_base_transform_and_erasing():
    steps = build_train_transform(aug_cfg("randaug", n=3, m=15, erase=0.5), 32).steps
    assert len(steps) == 3 and isinstance(steps[1], RandAugment)
    assert (steps[1].n, steps[1].m) == (3, 15)
    assert len(build_train_transform(aug_cfg("brightness"), 32).steps) == 1  # plain options stand alone
    assert len(build_train_transform(aug_cfg("brightness", base=True), 32).steps) == 2
    assert len(build_train_transform(aug_cfg("cutmix"), 32).steps) == 1  # the mixer works on batches


def test_random_erasing_paints_the_mean_colour():
    transform = build_train_transform(aug_cfg("none", erase=1.0), 32, mean=(0.4914, 0.4822, 0.4465))
    out = transform(np.zeros((32, 32, 3), np.uint8), np.random.default_rng(0))
    painted = (out != 0).any(axis=-1)
    assert 0.015 <= painted.mean() <= 0.36 and (out[painted] == [125, 123, 114]).all()


def test_unknown_option_is_a_user_error():
    with pytest.raises(UserError, match="unknown aug 'sparkle'; valid aug options"):
        aug_cfg("none", name="sparkle")


def test_each_option_takes_its_own_keys_and_checks_their_ranges():
    with pytest.raises(UserError, match=r"unknown config key 'aug.n'; aug=rotate takes base, .*, degrees, rot90"):
        aug_cfg("rotate", n=5)
    with pytest.raises(UserError, match=r"aug.degrees must be >= 0, got -1"):
        aug_cfg("rotate", degrees=-1)
    assert aug_cfg("randaug", n=3).n == 3 and aug_cfg("flip").vflip == 0.5


def test_randaugment_draws_n_ops_at_magnitude_m():
    policy = RandAugment(n=3, m=15)
    rng = np.random.default_rng(0)
    seen, signs = Counter(), Counter()
    for _ in range(2000):
        drawn = policy.sample(rng, 32, 32)
        assert len(drawn) == 3
        for op, value in drawn:
            seen[op] += 1
            expected = {"rotate": 15.0, "shear_x": 0.15, "shear_y": 0.15, "translate_x": 150 / 331 * 32 / 2,
                        "translate_y": 150 / 331 * 32 / 2, "brightness": 0.45, "color": 0.45, "contrast": 0.45,
                        "sharpness": 0.45, "posterize": 6.0, "solarize": 127.5}.get(op, 0.0)
            assert abs(value) == pytest.approx(expected), op
            if OPS[op].signed:
                signs[value > 0] += 1
    assert set(seen) == set(TORCHVISION_AUGMENT_OPS)
    assert min(seen.values()) > 6000 / 14 * 0.8  # uniform over the 14 ops
    assert 0.45 < signs[True] / (signs[True] + signs[False]) < 0.55  # negated half of the time
    assert RandAugment(n=0, m=9).sample(rng, 32, 32) == []


def test_randaugment_applies_what_it_draws():
    policy, image = RandAugment(n=2, m=9), picture()
    drawn = policy.sample(np.random.default_rng(3), 32, 32)
    assert np.array_equal(policy(image, np.random.default_rng(3)), apply_ops(image, drawn))


def test_fixmatch_strong_view_is_randaugment_then_a_grey_cutout_of_half_the_side():
    from cvrun.augment.policies import CUTOUT_FILL

    image = np.full((32, 32, 3), 255, dtype=np.uint8)  # white: every op but the cutout keeps most of it light
    nothing_else = POLICIES["randaug_cutout"].build(aug_cfg("randaug_cutout", n=0), 32)
    areas = set()
    for seed in range(200):
        grey = (nothing_else(image, np.random.default_rng(seed)) == CUTOUT_FILL).all(axis=2)
        rows, cols = np.flatnonzero(grey.any(axis=1)), np.flatnonzero(grey.any(axis=0))
        assert grey.sum() == len(rows) * len(cols) and len(rows) <= 16 and len(cols) <= 16  # one box, at most 16 px
        areas.add(int(grey.sum()))
    assert 256 in areas and min(areas) < 256  # whole inside the image, clipped at its edges
    policy = RandAugment(n=2, m=10)
    strong = POLICIES["randaug_cutout"].build(aug_cfg("randaug_cutout", cutout=0.0), 32)
    assert np.array_equal(strong(picture(), np.random.default_rng(5)), policy(picture(), np.random.default_rng(5)))


def test_trivialaugment_draws_one_op_at_a_random_magnitude():
    rng = np.random.default_rng(0)
    rotations = set()
    for _ in range(500):
        (op, value), = TrivialAugmentWide().sample(rng, 32, 32)
        assert op in TORCHVISION_AUGMENT_OPS
        if op == "rotate":
            assert abs(value) <= 135 and (abs(value) / 4.5).is_integer()  # 31 levels of 0-135 degrees
            rotations.add(abs(value))
    assert len(rotations) > 5


@pytest.mark.parametrize("name", sorted(AUTOAUGMENT_POLICIES))
def test_autoaugment_draws_steps_of_one_sub_policy(name):
    rng = np.random.default_rng(0)
    sub_policies = AUTOAUGMENT_POLICIES[name]
    counts = Counter()
    for _ in range(500):
        drawn = AutoAugment(name).sample(rng, 32, 32)
        assert len(drawn) <= 2
        ops_in_a_sub_policy = [{step[0] for step in sp} for sp in sub_policies]
        assert any({op for op, _ in drawn} <= ops for ops in ops_in_a_sub_policy)
        counts[len(drawn)] += 1
    assert counts[0] and counts[1] and counts[2]  # each step applies with its own probability


def test_randaugment_n_and_m_from_the_command_line_reach_the_policy(tmp_path):
    composed = cli("train", "aug=randaug", "aug.n=3", "aug.m=15", "--cfg", "job", cwd=tmp_path)
    assert composed.returncode == 0, composed.stderr
    cfg = validate(OmegaConf.create(composed.stdout), TrainConfig)
    policy = build_train_transform(cfg.aug, 32).steps[-1]
    assert isinstance(policy, RandAugment) and (policy.n, policy.m) == (3, 15)
    assert len(policy.sample(np.random.default_rng(0), 32, 32)) == 3
