from cvrun.models import create_model
from cvrun.models.analysis import count_macs, receptive_field


def test_lenet_macs_by_hand():
    # conv1 6x28x28 outputs x 3x5x5, conv2 16x10x10 x 6x5x5, then 400-120-84-10.
    expected = 6 * 28 * 28 * 75 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 10
    assert count_macs(create_model("lenet5", 10, 32), 32) == expected


def test_receptive_fields_match_the_known_values():
    assert receptive_field(create_model("lenet5", 10, 32)) == 14  # 5, then x2 pool, then +4x2
    assert receptive_field(create_model("resnet18", 10, 224)) == 435  # the published ResNet-18 figure
    assert receptive_field(create_model("resnet18", 10, 32)) == 109  # CIFAR stem
