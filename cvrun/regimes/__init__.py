"""Training regimes: one class per module, registered by name in REGIMES (base.py says what a regime owns).

Adding one is a module here (imported below, which registers it) and a YAML in configs/regime/.
"""

from cvrun.regimes.base import REGIMES, Regime, RegimeConfig
from cvrun.regimes import (distill, feature_extract, finetune, knn, lwf, noisy_student,  # noqa: E402,F401
                           pseudo_label, scratch)  # (importing them registers the regimes)

__all__ = ["REGIMES", "Regime", "RegimeConfig"]
