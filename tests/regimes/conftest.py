"""What the regime tests share."""

from pathlib import Path

from cvrun.engine.rundir import RunFolder
from cvrun.regimes import REGIMES


def bare_regime(cfg, tmp_path: Path):
    """The regime of `cfg` without data or models (its step is called on tensors the test makes), inputs
    used as they come (no normalisation)."""
    regime = REGIMES.get(cfg.regime.name)(cfg, RunFolder(tmp_path / "bare", writes=False))
    regime.normalize = lambda images: images
    regime.mixer = None
    return regime
