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
from typing import Callable, Generic, Iterator, TypeVar

from cvrun.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind  # what the names are names of, for messages: "model", "aug", "regime", ...
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
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
    """CVRUN_PLUGINS=package.module[,...]: modules of your own, imported before a command runs, that register
    their regimes, models, aug options, loggers or datasets with the registries above (README, Extending)."""
    for name in filter(None, (part.strip() for part in os.environ.get("CVRUN_PLUGINS", "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise UserError(f"CVRUN_PLUGINS names {name}, which cannot be imported ({err}); "
                            "put its folder on PYTHONPATH or fix the name") from None
