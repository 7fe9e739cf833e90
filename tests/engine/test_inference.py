"""The flip test-time augmentation and the ModelCard an export carries."""

import pytest
import torch
from torch import nn

from cvrun.engine.inference import FlipTTA, ModelCard, flip_averaged_log_probs
from cvrun.errors import UserError


class LeftHalf(nn.Module):
    """Logits from the left half of the image only: a mirror changes them."""

    def forward(self, images):
        left = images[..., : images.shape[-1] // 2].float().mean(dim=(2, 3))
        return torch.stack([left[:, 0], -left[:, 0]], dim=1)


def test_flip_tta_is_the_mean_softmax_of_the_image_and_its_mirror():
    images = torch.rand(4, 3, 8, 8)
    model = LeftHalf()
    expected = ((model(images).softmax(1) + model(images.flip(3)).softmax(1)) / 2).log()
    assert torch.allclose(FlipTTA(model)(images), expected)
    assert torch.allclose(FlipTTA(model)(images).exp().sum(1), torch.ones(4))  # probabilities: cross-entropy reads them
    symmetric = images + images.flip(3)
    assert torch.allclose(flip_averaged_log_probs(model, symmetric), model(symmetric).log_softmax(1), atol=1e-6)


def test_a_model_card_round_trips_through_string_metadata():
    card = ModelCard(["cat", "dog"], 32, [0.5, 0.4, 0.3], [0.2, 0.2, 0.2])
    metadata = card.metadata(cvrun_version="0.1.0")
    assert all(isinstance(v, str) for v in metadata.values())  # what ONNX's metadata_props hold
    assert ModelCard.from_metadata(metadata, "m.onnx") == card
    with pytest.raises(UserError, match="m.onnx has no cvrun metadata .* export it with cvrun export RUN_DIR"):
        ModelCard.from_metadata({"image_size": "32"}, "m.onnx")
