"""cvrun's Optuna sweeper as a Hydra plugin (hydra/sweeper=optuna; configs/hydra/sweeper/optuna.yaml).

Hydra instantiates sweepers only from the hydra_plugins package; the search itself is cvrun.search.sweeper,
imported when a sweep starts (Hydra imports this module whenever it scans for plugins: it stays light).
"""

from typing import Any, List

from hydra.plugins.sweeper import Sweeper


class OptunaSweeper(Sweeper):
    def __init__(self, **settings: Any):
        self.settings = settings
        self.search: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        from cvrun.search.sweeper import OptunaSearch

        self.search = OptunaSearch(self.settings, hydra_context, task_function, config)

    def sweep(self, arguments: List[str]) -> None:
        return self.search.run(arguments)
