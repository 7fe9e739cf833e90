"""Auto-augment policies over the op registry: their draws are pinned, and a new op is one registered function.

The digests below were taken from the policies before ops carried their own
magnitude scale, sign and torchvision reference (issue 24): a change to any
op's value, sign flip, op order or rng use changes them.
"""

import hashlib
import re

import cv2
import numpy as np
import pytest
from torchvision.transforms import v2

from cvrun.augment import OPS, build_train_transform
from cvrun.augment.auto import MAX_MAGNITUDE, TORCHVISION_AUGMENT_OPS, AutoAugment, RandAugment, TrivialAugmentWide
from cvrun.augment.ops import register_op, scaled
from cvrun.errors import UserError

from tests.conftest import REPO, aug_cfg

POLICIES_DRAWN = {
    "randaug n=2 m=9": lambda: RandAugment(n=2, m=9),
    "randaug n=3 m=30": lambda: RandAugment(n=3, m=30),
    "trivialaug": lambda: TrivialAugmentWide(),
    "autoaug cifar10": lambda: AutoAugment("cifar10"),
    "autoaug imagenet": lambda: AutoAugment("imagenet"),
    "autoaug svhn": lambda: AutoAugment("svhn"),
}
OPTIONS = ["basic", "randaug", "randaug_cutout", "trivialaug", "autoaug"]

# sha256 prefixes of 300 seeds' draws at 32x32 and 224x160 (repr of every (op, value) pair).
PINNED_DRAWS = {
    "randaug n=2 m=9": "739d3e0251c34059", "randaug n=3 m=30": "1d5e01ab315684ce", "trivialaug": "1c973db908350c38",
    "autoaug cifar10": "6cfffef8fa50b3a7", "autoaug imagenet": "dc867ec43c33d726", "autoaug svhn": "f27980ddf96b281a",
}
# sha256 prefixes of each aug option's outputs for 40 seeds on one 32 px and one 96 px picture.
PINNED_OUTPUTS = {
    "basic": "e0a00a8aa8cd25bd", "randaug": "cb2d8ac50a332f6c", "randaug_cutout": "0d3c6371a9ad1e24",
    "trivialaug": "17a0151fd10588c2", "autoaug": "40a510f935a722a2",
}


def draws_digest(name: str) -> str:
    policy, digest = POLICIES_DRAWN[name](), hashlib.sha256()
    for seed in range(300):
        rng = np.random.default_rng(seed)
        digest.update(repr([policy.sample(rng, 32, 32), policy.sample(rng, 224, 160)]).encode())
    return digest.hexdigest()[:16]


def outputs_digest(option: str) -> str:
    digest = hashlib.sha256()
    for size in (32, 96):
        transform = build_train_transform(aug_cfg(option), size, mean=(0.5, 0.4, 0.3))
        image = np.random.default_rng(size).integers(0, 256, (size, size, 3), dtype=np.uint8)
        for seed in range(40):
            digest.update(np.ascontiguousarray(transform(image, np.random.default_rng(seed))).tobytes())
    return digest.hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(POLICIES_DRAWN))
def test_policy_draws_are_those_pinned(name):
    assert draws_digest(name) == PINNED_DRAWS[name]


@pytest.mark.parametrize("option", OPTIONS)
def test_option_outputs_are_those_pinned(option):
    assert outputs_digest(option) == PINNED_OUTPUTS[option]


@pytest.mark.parametrize("torchvision_policy, wide", [(v2.RandAugment, False), (v2.TrivialAugmentWide, True)])
def test_registered_scales_and_signs_are_torchvisions(torchvision_policy, wide):
    """Each op's registered scale at every level, and its sign flip, against torchvision's augmentation space."""
    space = torchvision_policy._AUGMENTATION_SPACE
    by_torchvision_name = {OPS[name].torchvision: OPS[name] for name in TORCHVISION_AUGMENT_OPS}
    assert set(by_torchvision_name) == set(space)
    for height, width in [(32, 32), (224, 160)]:
        for torchvision_name, (magnitudes, signed) in space.items():
            op = by_torchvision_name[torchvision_name]
            assert op.signed == signed, torchvision_name
            theirs = magnitudes(MAX_MAGNITUDE + 1, height, width)
            for level in range(MAX_MAGNITUDE + 1):
                ours = op.value(level / MAX_MAGNITUDE, height, width, wide) / op.torchvision_unit
                expected = 0.0 if theirs is None else float(theirs[level])
                assert ours == pytest.approx(expected, rel=1e-6, abs=1e-6), (torchvision_name, level)


@pytest.fixture
def blur_op(monkeypatch):
    """A new op, registered as a plugin would: one function. The registry is restored when the test ends."""
    monkeypatch.setattr(OPS, "_entries", dict(OPS._entries))

    @register_op("test_blur", magnitude=scaled(3.0))
    def blur(image, value):
        return cv2.GaussianBlur(image, (0, 0), max(value, 0.1))
    return "test_blur"


def test_a_new_op_is_one_function_used_by_the_policy_that_lists_it(blur_op):
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    only_blur = RandAugment(n=1, m=15, ops=(blur_op,))
    assert only_blur.sample(np.random.default_rng(0), 32, 32) == [(blur_op, 1.5)]  # 3.0 x 15/30, never negated
    assert np.array_equal(only_blur(image, np.random.default_rng(0)), cv2.GaussianBlur(image, (0, 0), 1.5))
    with_blur = TrivialAugmentWide(ops=(*TORCHVISION_AUGMENT_OPS, blur_op))
    assert any(op == blur_op for seed in range(100) for op, _ in with_blur.sample(np.random.default_rng(seed), 32, 32))
    # Registering it changed no existing policy's draws.
    for name in ("randaug n=2 m=9", "trivialaug", "autoaug cifar10"):
        assert draws_digest(name) == PINNED_DRAWS[name]


def test_the_readme_op_example_registers_and_its_policy_draws_the_op(monkeypatch):
    monkeypatch.setattr(OPS, "_entries", dict(OPS._entries))
    section = (REPO / "README.md").read_text().split("## Augmentation", 1)[1].split("\n## ", 1)[0]
    example, = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102 - README's own code
    drawn = [op for seed in range(50) for op, _ in namespace["policy"].sample(np.random.default_rng(seed), 32, 32)]
    assert "blur" in drawn and OPS["blur"].value(0.3, 32, 32) == pytest.approx(0.9)


def test_a_policy_listing_an_unknown_op_is_refused_with_the_names_it_could_take():
    with pytest.raises(UserError, match=r"unknown augmentation op 'rotat' \(did you mean 'rotate'\?\)"):
        RandAugment(n=2, m=9, ops=("identity", "rotat"))
