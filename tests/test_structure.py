"""The codebase's shape: every option is one registered entry and one YAML, regimes live in one place,
layers point one way."""

import ast
import re
from pathlib import Path

import pytest

from cvrun.paths import config_dir

PACKAGE = Path(__file__).resolve().parent.parent / "cvrun"


def registries():
    from cvrun.augment import POLICIES
    from cvrun.augment.ops import OPS
    from cvrun.data.sources import SOURCES
    from cvrun.engine.optim import OPTIMIZERS
    from cvrun.engine.sched import SCHEDULES
    from cvrun.loggers import LOGGERS
    from cvrun.models import MODELS
    from cvrun.regimes import REGIMES

    return {"model": MODELS, "aug": POLICIES, "regime": REGIMES, "dataset": SOURCES, "logger": LOGGERS,
            "optim": OPTIMIZERS, "sched": SCHEDULES}, OPS


@pytest.mark.parametrize("group", ["model", "aug", "regime", "dataset", "logger", "optim", "sched"])
def test_every_registered_name_has_a_yaml_and_every_yaml_a_registered_name(group):
    registry = registries()[0][group]
    # cvrun's own entries: a test may register one of its own (test_contract.py), with no YAML.
    names = {name for name, entry in registry.items() if getattr(entry, "build", entry).__module__.startswith("cvrun.")}
    yamls = {p.stem for p in (config_dir() / group).glob("*.yaml")}
    assert names == yamls, (sorted(names - yamls), sorted(yamls - names))


def test_the_registries_are_one_type_with_a_did_you_mean_list():
    from cvrun.errors import UserError
    from cvrun.registry import Registry

    groups, ops = registries()
    assert all(isinstance(r, Registry) for r in (*groups.values(), ops))
    with pytest.raises(UserError, match=r"unknown model 'lenet6' \(did you mean 'lenet5'\?\); valid model options"):
        groups["model"].get("lenet6")


def python_files(below: Path):
    return sorted(p for p in below.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_regime_is_named_in_code_outside_cvrun_regimes():
    from cvrun.regimes import REGIMES

    names = [name for name, regime in REGIMES.items() if regime.__module__.startswith("cvrun.")]
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    found = [f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
             for path in python_files(PACKAGE) if "regimes" not in path.relative_to(PACKAGE).parts
             for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, "\n".join(found)


# package -> the cvrun packages it may import (layers point one way: commands -> regimes -> engine ->
# data/models/augment -> io/config; report and loggers turn engine events into files for commands; search runs
# the train command's jobs as an Optuna study and reports to it from the engine's events).
ALLOWED = {
    "commands": {"regimes", "engine", "report", "loggers", "search", "data", "models", "augment"},
    "search": {"engine", "report"},
    "regimes": {"engine", "data", "models", "augment"},
    "report": {"engine", "loggers"},
    "loggers": {"engine"},
    "engine": {"data", "models", "augment"},
    "data": set(),
    "models": set(),
    "augment": set(),
}
# Modules at the bottom that every layer may use.
BOTTOM = {"errors", "io", "config", "registry", "parallel", "paths", "overrides"}


def cvrun_imports(path: Path) -> set[str]:
    """The cvrun packages or modules a file imports (cvrun.X)."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        modules = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                   [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
        for module in modules:
            parts = module.split(".")
            if parts[0] == "cvrun" and len(parts) > 1:
                imported.add(parts[1])
    return imported


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_layers_point_one_way(package):
    wrong = {}
    for path in python_files(PACKAGE / package):
        bad = cvrun_imports(path) - ALLOWED[package] - BOTTOM - {package}
        if bad:
            wrong[str(path.relative_to(PACKAGE))] = sorted(bad)
    assert not wrong, wrong


def test_the_bottom_layer_imports_no_cvrun_package():
    # overrides composes the config as Hydra will, which needs the commands' schemas registered first; a
    # command's own checks of a composed job reach it as a function (preflight's check_job), not an import.
    for name in BOTTOM:
        path = PACKAGE / f"{name}.py"
        assert cvrun_imports(path) <= BOTTOM | ({"commands"} if name == "overrides" else set()), \
            (name, cvrun_imports(path))
