"""CutMix and MixUp: soft targets that sum to 1 and follow the drawn mixing weight."""

import torch

from cvrun.augment.mixers import build_batch_mixer
from tests.conftest import aug_cfg

CLASSES = 10


def tagged_batch(size=8):
    """Image i is filled with the value i + 1 and has label i: each pixel tells its source."""
    images = torch.arange(1, size + 1, dtype=torch.float32).view(size, 1, 1, 1).expand(size, 3, 16, 16).clone()
    return images, torch.arange(size)


def test_cutmix_targets_sum_to_one_and_match_the_pasted_area():
    mixer = build_batch_mixer(aug_cfg("cutmix"), CLASSES)
    torch.manual_seed(0)
    areas = []
    for _ in range(20):
        images, labels = tagged_batch()
        mixed, targets = mixer(images, labels)
        assert targets.shape == (8, CLASSES) and torch.allclose(targets.sum(dim=1), torch.ones(8))
        for i in range(8):
            own_share = (mixed[i] == i + 1).float().mean()
            partner = (i - 1) % 8  # torchvision pairs each image with its neighbour in the batch
            assert torch.isclose(targets[i, i], own_share, atol=1e-6)
            assert torch.isclose(targets[i, partner], 1 - own_share, atol=1e-6)
            assert ((mixed[i] == i + 1) | (mixed[i] == partner + 1)).all()
        areas.append(float(targets[0, 0]))
    assert len(set(areas)) > 10  # lambda is drawn per batch


def test_mixup_blends_images_and_targets_with_the_same_weight():
    mixer = build_batch_mixer(aug_cfg("mixup"), CLASSES)
    torch.manual_seed(1)
    images, labels = tagged_batch()
    mixed, targets = mixer(images, labels)
    assert torch.allclose(targets.sum(dim=1), torch.ones(8))
    for i in range(8):
        weight = targets[i, i]
        partner = (i - 1) % 8
        assert torch.allclose(mixed[i], weight * (i + 1) + (1 - weight) * (partner + 1))


def test_mixer_probability_and_null_mix():
    assert build_batch_mixer(aug_cfg("randaug"), CLASSES) is None
    images, labels = tagged_batch()
    untouched, same_labels = build_batch_mixer(aug_cfg("randaug", mix="cutmix", prob=0.0), CLASSES)(images, labels)
    assert untouched is images and same_labels is labels
    torch.manual_seed(0)
    mixer = build_batch_mixer(aug_cfg("mixup", prob=0.5), CLASSES)
    mixed_batches = sum(mixer(images, labels)[1].ndim == 2 for _ in range(400))
    assert 150 < mixed_batches < 250
