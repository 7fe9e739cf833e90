"""`regime=scratch`: train the model from its initial weights on the labeled set (the standard run)."""

from __future__ import annotations

from dataclasses import dataclass

from cvrun.regimes.base import REGIMES, Regime, RegimeConfig


@dataclass
class ScratchConfig(RegimeConfig):
    name: str = "scratch"


@REGIMES.register("scratch")
class Scratch(Regime):
    config = ScratchConfig
