"""One Hydra app per command; this module gives them a shared entry point."""

from __future__ import annotations

import sys
from typing import Any, Callable

from cvrun.errors import UserError


def register_schemas() -> None:
    """Put the dataclass schemas where the primary configs' defaults find them."""
    from hydra.core.config_store import ConfigStore

    from cvrun.config import SCHEMAS

    store = ConfigStore.instance()
    for command, schema in SCHEMAS.items():
        store.store(name=f"{command}_schema", node=schema)


def run_hydra(config_name: str, task: Callable[[Any], Any]) -> int:
    """Run `task` as a Hydra app; return the process exit status.

    A UserError inside the task prints one line and exits 2. Hydra rejecting
    the command line or config (before the task starts) also exits 2: both
    are mistakes the user can fix. Anything else keeps Hydra's status.
    """
    import hydra

    from cvrun.paths import config_dir

    register_schemas()
    started = False

    def guarded_task(cfg: Any) -> Any:
        nonlocal started
        started = True
        try:
            return task(cfg)
        except UserError as err:
            print(f"cvrun: error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    app = hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")(guarded_task)
    try:
        app()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        return 2 if code == 1 and not started else code
    return 0
