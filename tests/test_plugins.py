"""Plugins: a distribution declaring the entry-point group cvrun.plugins is imported at start and its options are
used as cvrun's; CVRUN_PLUGINS finds modules beside the launch folder; a plugin that fails is one line."""

import json
import sys
from pathlib import Path

import pytest
from hydra.core.config_store import ConfigStore

from cvrun.models import MODELS
from tests.conftest import cli, single

PLUGIN_MODEL = '''
from hydra.core.config_store import ConfigStore
from torch import nn

from cvrun.models.registry import Classifier, register_model


@register_model("{name}")
def build(num_classes, image_size, small_input, dropout, drop_path):
    backbone = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Classifier(backbone, 32, num_classes, dropout)


ConfigStore.instance().store(group="model", name="{name}", node={{"name": "{name}"}})
'''


def installed(site: Path, distribution: str, module: str, code: str) -> None:
    """A distribution as pip leaves it in site-packages: its module, and metadata declaring the entry point."""
    (site / f"{module}.py").write_text(code)
    info = site / f"{distribution.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[cvrun.plugins]\n{module} = {module}\n")


@pytest.fixture
def plugin_site(tmp_path, monkeypatch):
    """A folder on sys.path for distributions made by a test; what their plugins register is gone afterwards."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))
    monkeypatch.setattr(sys, "path", list(sys.path))  # restored: CVRUN_PLUGINS adds the launch folder
    stored, modules = dict(ConfigStore.instance().repo.get("model", {})), set(sys.modules)
    yield site
    ConfigStore.instance().repo["model"] = stored
    for name in set(sys.modules) - modules:
        if name.startswith(("my_", "cvrun_")):
            del sys.modules[name]


def test_an_installed_plugin_registers_a_model_that_trains(plugin_site, tmp_path):
    installed(plugin_site, "cvrun-tiny-net", "cvrun_tiny_net", PLUGIN_MODEL.format(name="tiny_net"))
    result = cli("train", "model=tiny_net", "dataset=shapes", "dataset.image_size=32", "dataset.train_size=200",
                 "dataset.test_size=50", "aug=none", "trainer.epochs=1", "trainer.progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = single((tmp_path / "outputs").glob("*/*"))
    assert run.name.endswith("_tiny_net") and json.loads((run / "summary.json").read_text())["status"] == "completed"


def test_a_plugin_beside_the_launch_folder_is_found_by_cvrun_plugins(plugin_site, tmp_path, monkeypatch):
    launch = tmp_path / "project"
    launch.mkdir()
    (launch / "my_local_net.py").write_text(PLUGIN_MODEL.format(name="local_net"))
    monkeypatch.setenv("CVRUN_PLUGINS", "my_local_net")
    assert str(launch) not in sys.path
    result = cli("info", "model=local_net", "dataset=shapes", cwd=launch)
    assert result.returncode == 0, result.stderr
    assert "local_net" in result.stdout
    monkeypatch.setenv("CVRUN_PLUGINS", "my_local_nett")
    misspelt = cli("info", "model=local_net", cwd=launch)
    assert misspelt.returncode == 2 and misspelt.stderr.strip().splitlines() == [
        "cvrun: error: CVRUN_PLUGINS names my_local_nett, which cannot be imported (ModuleNotFoundError: No module "
        "named 'my_local_nett'); put it in the folder you start cvrun from, or its folder on PYTHONPATH, or fix "
        "the name"]


def test_a_plugin_that_fails_to_import_is_one_line_naming_its_distribution(plugin_site, tmp_path):
    installed(plugin_site, "cvrun-broken", "cvrun_broken", "raise RuntimeError('needs a GPU driver')\n")
    result = cli("info", "model=lenet5", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "cvrun: error: plugin cvrun_broken of cvrun-broken (cvrun.plugins entry point cvrun_broken) cannot be "
        "imported (RuntimeError: needs a GPU driver); fix it, or uninstall cvrun-broken"]
