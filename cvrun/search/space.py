"""The search space, written in Hydra's sweep grammar as Hydra's Optuna plugin reads it.

    aug.n: range(1, 4)                    integers 1, 2, 3
    optim.lr: tag(log, interval(1e-3, 1)) a float drawn on a log scale
    trainer.label_smoothing: interval(0, 0.2)
    model: choice(lenet5, resnet20)       one of the listed values
    trainer.epochs: 5                     fixed: every trial gets it
"""

from __future__ import annotations

from typing import Any

from cvrun.errors import UserError


def search_space(params: dict[str, Any], arguments: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The distributions to search, by key, and the overrides every trial gets.

    `params` come from hydra.sweeper.params (a preset), `arguments` from the command line; a key given on
    the command line replaces the preset's (a plain value there fixes it).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    lines = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except HydraException as err:
        raise UserError(f"the search space cannot be read: {str(err).splitlines()[0]}") from None
    space: dict[str, Any] = {}
    fixed: dict[str, str] = {}
    for override in parsed:
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            fixed[key] = override.input_line
    return space, list(fixed.values())


def distribution(override: Any) -> Any:
    """Optuna's distribution for one sweep override."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = override.value()
    tags = set(getattr(value, "tags", None) or ())
    log = "log" in tags
    if override.is_choice_sweep():
        return CategoricalDistribution(list(override.sweep_iterator()))
    if override.is_range_sweep():
        values = list(override.sweep_iterator())
        if not values:
            raise UserError(f"{override.input_line}: the range holds no value")
        if all(isinstance(v, int) for v in values):
            return IntDistribution(values[0], values[-1], step=1 if log else int(value.step), log=log)
        return FloatDistribution(values[0], values[-1], step=None if log else float(value.step), log=log)
    if override.is_interval_sweep():
        if value.start > value.end:
            raise UserError(f"{override.input_line}: the interval's start is above its end; write "
                            f"interval({value.end}, {value.start})")
        if log and value.start <= 0:
            raise UserError(f"{override.input_line}: a log scale needs an interval above 0, not from {value.start}")
        if "int" in tags:
            return IntDistribution(int(value.start), int(value.end), log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise UserError(f"{override.input_line}: an Optuna search takes choice(...), range(...), interval(...) or a "
                    "comma list")


def as_override(key: str, value: Any) -> str:
    """`key=value` for a trial's parameter, quoted where Hydra's grammar would read the value as syntax."""
    from hydra.core.override_parser.types import Transformer

    return f"{key}={Transformer.str(value)}"
