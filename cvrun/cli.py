"""`cvrun COMMAND ...`: the first argument picks a Hydra app, the rest go to Hydra.

Each command is its own `@hydra.main` app with its own primary config
(configs/train.yaml, configs/eval.yaml, ...), so `-m`, launchers, `--cfg` and
Hydra's output folders work as Hydra documents them. This module imports
neither torch nor Hydra until a command runs: `cvrun --help` stays instant.
"""

from __future__ import annotations

import difflib
import importlib
import sys

from cvrun.errors import UserError

# name -> (one-line description, positional argument Hydra gets as key=value, or None; module)
COMMANDS = {
    "train": ("train one run, or a sweep with -m", None, "cvrun.commands.train"),
    "eval": ("evaluate a finished run's best checkpoint: cvrun eval RUN_DIR [split=test|val]",
             "run_dir", "cvrun.commands.eval"),
    "reproduce": ("re-run a saved config and compare metrics: cvrun reproduce RUN_DIR [--check] [KEY=VALUE...]",
                  None, "cvrun.commands.reproduce"),
    "summarize": ("table of all runs under DIR: cvrun summarize DIR [--sort KEY] [--format table|csv|md]",
                  None, "cvrun.commands.summarize"),
    "info": ("parameters, multiply-accumulates, receptive field: cvrun info model=... [dataset=...]",
             None, "cvrun.commands.info"),
    "preview": ("PNG grid of augmented training images: cvrun preview [aug=...] [dataset=...]",
                None, "cvrun.commands.preview"),
}

# Hydra flags that take a value in the next argument.
_FLAGS_WITH_VALUE = {"--config-dir", "-cd", "--config-name", "-cn", "--config-path", "-cp",
                     "--cfg", "-c", "--package", "-p", "--experimental-rerun", "--info", "-i"}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: cvrun COMMAND [OVERRIDES...]", "",
             "Image-classification experiment runner. Commands:"]
    for name, (text, *_) in COMMANDS.items():
        lines.append(f"  {name:<{width}}  {text}")
    lines += ["", "Overrides use Hydra's grammar (key=value, group=option, -m for sweeps).",
              "`cvrun COMMAND --help` lists every config group and option of a command."]
    return "\n".join(lines)


def fail(message: str, code: int = 2) -> int:
    print(f"cvrun: error: {message}", file=sys.stderr)
    return code


def hydra_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def split_positional(args: list[str], positional: str | None) -> list[str]:
    """Turn `cvrun eval RUN_DIR x=1` into Hydra's `run_dir='RUN_DIR' x=1`."""
    if positional is None:
        return args
    for i, arg in enumerate(args):
        if not arg.startswith("-") and "=" not in arg:
            return args[:i] + [f"{positional}={hydra_quote(arg)}"] + args[i + 1:]
    return args


def override_args(args: list[str]) -> list[str] | None:
    """The override arguments, or None when a Hydra flag swaps the config tree."""
    overrides, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--config-dir", "-cd", "--config-name", "-cn", "--config-path", "-cp"):
            return None
        elif arg in _FLAGS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            overrides.append(arg)
    return overrides


def preflight(command: str, args: list[str]) -> None:
    """Check group options and key names before Hydra composes anything.

    Hydra would also reject these, but with a multi-line report; a user gets
    one line naming what is wrong and what would be right.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from cvrun.config import SCHEMAS, schema_keys
    from cvrun.paths import config_dir

    overrides = override_args(args)
    if not overrides or command not in SCHEMAS:  # commands without Hydra parse their own arguments
        return
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise UserError(str(err).splitlines()[0]) from None
    root = config_dir()
    keys = schema_keys(SCHEMAS[command])
    for override in parsed:
        key = override.key_or_group
        if key.startswith("hydra") or override.is_delete() or override.is_add():
            continue
        group_dir = root / key
        if group_dir.is_dir():
            options = sorted(p.stem for p in group_dir.glob("*.yaml"))
            values = (list(override.sweep_string_iterator()) if override.is_sweep_override()
                      else [override.get_value_element_as_str()])
            for value in values:
                if value not in options:
                    raise UserError(f"unknown {key} '{value}'; valid {key} options: {', '.join(options)}")
        elif key not in keys and not any(k.startswith(key + ".") for k in keys):
            close = difflib.get_close_matches(key, keys, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "see `cvrun {command} --cfg job` for all keys"
            raise UserError(f"unknown config key '{key}'; {hint}")
        else:
            for value in (list(override.sweep_string_iterator()) if override.is_sweep_override()
                          else [override.get_value_element_as_str()]):
                check_value(SCHEMAS[command], key, value)


def check_value(schema: type, key: str, value: str) -> None:
    """Type and range of one `key=value` against the schema, as validate() would judge it."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from cvrun.config import check_values

    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist([f"{key}={value}"]))
    except OmegaConfBaseException as err:
        reason = str(getattr(err, "msg", err)).splitlines()[0]
        raise UserError(f"{key}={value}: {reason}") from None
    check_values(merged)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return fail(f"unknown command '{command}'{hint}; commands: {', '.join(COMMANDS)}")
    _, positional, module_name = COMMANDS[command]
    rest = split_positional(rest, positional)
    try:
        if "--help" not in rest and "-h" not in rest:
            preflight(command, rest)
            if command == "train":
                from cvrun.commands.train import resume_args
                from cvrun.engine.distributed import hydra_args

                rest = hydra_args(resume_args(rest))
    except UserError as err:
        return fail(str(err))
    module = importlib.import_module(module_name)
    sys.argv = [f"cvrun {command}"] + rest
    return module.run_app()
