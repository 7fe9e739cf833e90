"""Training regimes: one class per module, registered by name in REGIMES (base.py says what a regime owns).

Adding one is a module in this folder (every module here is imported below, which registers its
regime) and a YAML in configs/regime/.
"""

import importlib
import pkgutil

from cvrun.regimes.base import REGIMES, Regime, RegimeConfig

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["REGIMES", "Regime", "RegimeConfig"]
