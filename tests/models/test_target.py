"""model=target: a plain nn.Module of the user's own, from one file outside the repo and a YAML of the user's own."""

import json
import sys
import textwrap

import pytest
import torch

from cvrun.errors import UserError
from cvrun.models import create_model
from cvrun.models.target import WholeModel
from tests.conftest import cli, write_image_tree

MODULE = "tiny_nets_of_mine"  # a name no other module on sys.path has
SOURCE = textwrap.dedent('''
    import torch
    from torch import nn


    class TinyNet(nn.Module):
        """conv -> pool -> fc: its logits are its last linear layer's output."""

        def __init__(self, num_classes, width=8):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                          nn.Flatten())
            self.classifier = nn.Linear(width, num_classes)

        def forward(self, x):
            return self.classifier(self.features(x))


    class Residual(nn.Module):
        """Logits = pooled conv maps + a linear layer of them: no layer makes them alone."""

        def __init__(self, num_classes):
            super().__init__()
            self.conv = nn.Conv2d(3, num_classes, 3, padding=1)
            self.mix = nn.Linear(num_classes, num_classes)

        def forward(self, x):
            pooled = self.conv(x).mean(dim=(2, 3))
            return pooled + self.mix(pooled)
''')


@pytest.fixture
def own_module(tmp_path, monkeypatch):
    (tmp_path / f"{MODULE}.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop(MODULE, None)


def build(name: str, head=None, **kwargs):
    return create_model("target", 3, 16, _target_=f"{MODULE}.{name}", kwargs=kwargs, head=head)


def test_a_module_whose_forward_ends_in_a_linear_layer_gets_it_as_its_head(own_module):
    torch.manual_seed(0)
    model = build("TinyNet", width=6).eval()
    images = torch.randn(2, 3, 16, 16)
    assert model.head_modules() == [("head", model.head)] and model.head.in_features == 6
    assert model.backbone(images).shape == (2, 6)  # the module with its classifier made an identity
    assert torch.allclose(model.output_layer(model.backbone(images)), model(images))
    model.freeze_backbone()  # feature_extract: the head alone trains
    assert {id(p) for p in model.parameters() if p.requires_grad} == {id(p) for p in model.head.parameters()}


def test_a_module_without_such_a_head_gives_its_logits_and_a_transfer_regime_is_told(own_module):
    model = build("Residual")
    assert isinstance(model, WholeModel) and model(torch.zeros(2, 3, 16, 16)).shape == (2, 3)
    with pytest.raises(UserError, match="has no head cvrun can find .* set model.head to the attribute"):
        model.head_parameters()
    with pytest.raises(UserError, match="model.head=mix is not what .*Residual's forward applies last"):
        build("Residual", head="mix")
    with pytest.raises(UserError, match="cannot be built with num_classes and model.kwargs=.'depth': 2."):
        build("TinyNet", depth=2)


def test_a_yaml_in_the_users_config_folder_trains_it(tmp_path):
    """The README's example: my_models.py in the launch folder, myconf/model/my_net.yaml, --config-dir."""
    (tmp_path / f"{MODULE}.py").write_text(SOURCE)
    (tmp_path / "myconf" / "model").mkdir(parents=True)
    (tmp_path / "myconf" / "model" / "my_net.yaml").write_text(
        f"defaults: [target_schema, _self_]\nname: target\n_target_: {MODULE}.TinyNet\nkwargs: {{width: 16}}\n")
    tree = write_image_tree(tmp_path / "tree", {"dark": 20, "mid": 20, "light": 20}, test_per_class=10, size=16)
    try:
        result = cli("train", "--config-dir", "myconf", "model=my_net", "dataset=imagefolder", f"dataset.root={tree}",
                     "dataset.image_size=16", "trainer.epochs=3", "trainer.batch_size=16", "trainer.num_workers=0",
                     "optim.lr=0.1", "trainer.progress=false", "hydra.run.dir=run", cwd=tmp_path)
    finally:
        sys.modules.pop(MODULE, None)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["test_acc1"] > 60, summary  # chance 33
    assert f"model target {MODULE}.TinyNet: " in (tmp_path / "run" / "train.log").read_text()
