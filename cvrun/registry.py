"""One registry type for everything a config option names: models, ops, policies, regimes, sources, loggers.

    MODELS = Registry("model")

    @MODELS.register("lenet5")
    def lenet5(...): ...

    MODELS.get("lenet6")  # UserError: unknown model 'lenet6' (did you mean 'lenet5'?); valid model options: ...

A registered name is the name of its YAML file in configs/<group>/ (tests check both ways).
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from typing import Any, Callable, Generic, Iterator, TypeVar

from cvrun.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind  # what the names are names of, for messages: "model", "aug", "regime", ...
        self._entries: dict[str, T] = {}

    def register(self, name: str, **attributes: Any) -> Callable[[T], T]:
        """`attributes`: set on the entry as it is registered (an option's `config` schema, its flags)."""
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            for key, value in attributes.items():
                setattr(entry, key, value)
            self._entries[name] = entry
            return entry
        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UserError(self.unknown(name))
        return self._entries[name]

    def unknown(self, name: str) -> str:
        close = difflib.get_close_matches(name, self._entries, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown {self.kind} '{name}'{hint}; valid {self.kind} options: {', '.join(sorted(self._entries))}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(sorted(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)


def load_plugins() -> None:
    """Import the plugins, which register their models, regimes, aug options, loggers or datasets with the
    registries above (README, Bring your own): every module an installed distribution declares in the
    entry-point group `cvrun.plugins`, then the modules CVRUN_PLUGINS=package.module[,...] names, found on
    sys.path or in the folder cvrun was started from. A module imported already is not imported again."""
    from importlib.metadata import entry_points

    for entry in entry_points(group=PLUGIN_GROUP):
        distribution = entry.dist.name if entry.dist is not None else "?"
        import_plugin(entry.module, f"plugin {entry.name} of {distribution} ({PLUGIN_GROUP} entry point {entry.value})",
                      f"fix it, or uninstall {distribution}")
    names = [part.strip() for part in os.environ.get("CVRUN_PLUGINS", "").split(",") if part.strip()]
    if names and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # after the installed packages: a module beside the launch never shadows one
    for name in names:
        import_plugin(name, f"CVRUN_PLUGINS names {name}, which", "fix it",
                      "put it in the folder you start cvrun from, or its folder on PYTHONPATH, or fix the name")


# The entry-point group a distribution declares its cvrun plugin module in (pyproject.toml:
# [project.entry-points."cvrun.plugins"] my_plugin = "my_package.plugin").
PLUGIN_GROUP = "cvrun.plugins"


def import_plugin(module: str, what: str, advice: str, advice_if_not_found: str | None = None) -> None:
    """Import a plugin module; any error in it (the module not found, a mistake in its code, a package it
    needs) is one line, with `advice_if_not_found` when the module itself is nowhere."""
    if module in sys.modules:
        return
    try:
        importlib.import_module(module)
    except Exception as err:  # noqa: BLE001 - whatever the plugin raised: the user's to fix, named in one line
        reason = str(err).splitlines()[0] if str(err) else ""
        nowhere = isinstance(err, ModuleNotFoundError) and f"{module}.".startswith(f"{err.name}.")
        advice = advice_if_not_found if nowhere and advice_if_not_found else advice
        raise UserError(f"{what} cannot be imported ({type(err).__name__}: {reason}); {advice}") from None
