"""A non-editable install must carry every subpackage (Hydra's plugin package too) and the config tree."""

import tomllib
from pathlib import Path

from cvrun.paths import config_dir

REPO = Path(__file__).resolve().parent.parent


def test_pyproject_lists_every_subpackage_and_the_configs():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO).parts)
               for top in ("cvrun", "hydra_plugins") for p in (REPO / top).rglob("__init__.py")}
    assert on_disk | {"cvrun.configs"} == listed


def test_config_dir_has_every_primary_config():
    for name in ("train.yaml", "eval.yaml", "info.yaml"):
        assert (config_dir() / name).is_file()
