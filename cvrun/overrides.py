"""Command-line overrides before Hydra sees them: quoting paths, reading them, one-line mistakes.

Hydra would reject a bad override too, but with a multi-line report or a lexer
error naming no argument; here a user gets one line naming the argument and
the form that would be right. Imports neither torch nor Hydra at module level.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Callable

from cvrun.errors import UserError

# Hydra's own keys whose values are paths; the schemas mark cvrun's (path_keys).
HYDRA_PATH_KEYS = {"hydra.run.dir", "hydra.sweep.dir"}
# What Hydra reads unquoted in a path without taking it for syntax.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_./~+\-]*")

# Hydra flags that take a value in the next argument (or after '=': --config-dir=DIR).
FLAGS_WITH_VALUE = {"--config-dir", "-cd", "--config-name", "-cn", "--config-path", "-cp", "--cfg", "-c",
                    "--package", "-p", "--experimental-rerun", "--info", "-i", "--shell-completion", "-sc"}
# Flags that swap cvrun's primary config for another: cvrun cannot check what that one composes.
CONFIG_TREE_FLAGS = {"--config-name", "-cn", "--config-path", "-cp"}
CONFIG_DIR_FLAGS = ("--config-dir", "-cd")


def hydra_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def is_positional(arg: str) -> bool:
    """A path given on its own (`cvrun eval RUN_DIR`), which may itself hold '=' (a sweep job folder)."""
    if arg.startswith("-"):
        return False
    key = arg.split("=", 1)[0]
    return "=" not in arg or "/" in key or Path(arg).exists()


def split_positional(args: list[str], positional: str | None) -> list[str]:
    """Turn `cvrun eval RUN_DIR x=1` into Hydra's `run_dir='RUN_DIR' x=1`."""
    if positional is None:
        return args
    for i, arg in enumerate(args):
        if is_positional(arg):
            return args[:i] + [f"{positional}={hydra_quote(arg)}"] + args[i + 1:]
    return args


def path_keys() -> set[str]:
    """Keys whose values are paths. Sweep job folders hold '=' and ',' (0_aug=none,model=lenet5), which
    Hydra's grammar reads as syntax, so these values reach Hydra quoted."""
    from cvrun.commands import register_option_groups
    from cvrun.config import path_keys as schema_path_keys

    register_option_groups()
    return schema_path_keys() | HYDRA_PATH_KEYS


def quote_paths(args: list[str]) -> list[str]:
    """Quote the values of path keys that Hydra would otherwise read as syntax.

    A comma in a value that is no existing path stays a sweep list (`-m dataset.root=a,b`).
    """
    quoted = []
    for arg in args:
        key, sep, value = arg.partition("=")
        plain = not value or value[0] in "'\"" or _PLAIN_PATH.fullmatch(value)
        sweep = "," in value and "=" not in value and not Path(value).expanduser().exists()
        if sep and not plain and not sweep and key.lstrip("+~") in path_keys():
            arg = f"{key}={hydra_quote(value)}"
        quoted.append(arg)
    return quoted


def override_args(args: list[str]) -> list[str] | None:
    """The override arguments, or None when a Hydra flag swaps the config tree."""
    overrides, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg.split("=", 1)[0] in CONFIG_TREE_FLAGS:
            return None
        elif arg in FLAGS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            overrides.append(arg)
    return overrides


def with_overrides(args: list[str], extra: list[str]) -> list[str]:
    """`args` with `extra` overrides next to the given ones: Hydra's argparse takes the overrides as one run of
    positional arguments, so a flag such as `--cfg job` may not stand between two of them."""
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
        elif arg in FLAGS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            return [*args[:i], *extra, *args[i:]]
    return [*args, *extra]


def flag_value(args: list[str], flags: tuple[str, ...], what: str = "FOLDER") -> str | None:
    """The value the last of `flags` gives (`--config-dir DIR` or `--config-dir=DIR`), None without one."""
    value = None
    for i, arg in enumerate(args):
        flag, sep, given = arg.partition("=")
        if flag in flags:
            value = given if sep else (args[i + 1] if i + 1 < len(args) else "")
            if not value or (not sep and value.startswith("-")):
                raise UserError(f"{flag} needs a value: {flag} {what}")
    return value


def searchpath_entries(args: list[str]) -> list[str]:
    """The entries of a `hydra.searchpath=[...]` override (the last one given; Hydra reads that one)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    given = [arg for arg in override_args(args) or [] if arg.split("=", 1)[0].lstrip("+~") == "hydra.searchpath"]
    if not given:
        return []
    try:
        value = OverridesParser.create().parse_override(given[-1]).value()
    except HydraException:
        value = None
    if not isinstance(value, list) or not all(isinstance(entry, str) for entry in value):
        raise UserError(f"'{given[-1]}': hydra.searchpath takes a list of folders, e.g. "
                        "hydra.searchpath=[file://myconf,pkg://my_package.conf]")
    return value


# Hydra's modes: a command line takes one.
MODE_FLAGS = {"--run": "-r", "--multirun": "-m", "--cfg": "-c", "--info": "-i", "--shell-completion": "-sc"}


def check_one_mode(args: list[str]) -> None:
    """Hydra runs one of --run, --multirun, --cfg, --info and --shell-completion; two are one line, not its
    traceback."""
    given, skip = [], False
    for arg in args:
        flag = arg.split("=", 1)[0]
        if skip:
            skip = False
        elif flag in MODE_FLAGS or flag in MODE_FLAGS.values():
            given.append(flag)
            skip = flag in FLAGS_WITH_VALUE and "=" not in arg
        elif arg in FLAGS_WITH_VALUE:
            skip = True
    modes = {flag if flag in MODE_FLAGS else next(k for k, v in MODE_FLAGS.items() if v == flag) for flag in given}
    if len(modes) > 1:
        raise UserError(f"{given[0]} and {next(f for f in given if f != given[0])} cannot be given together: Hydra "
                        f"runs one of {', '.join(MODE_FLAGS)}; drop one")


def user_config_sources(args: list[str]) -> tuple[str | None, list[str]]:
    """What a command line adds to the config search path: --config-dir's folder, hydra.searchpath's entries."""
    return flag_value(args, CONFIG_DIR_FLAGS), searchpath_entries(args)


def plain_group_choices(command: str, args: list[str]) -> list[str]:
    """`+experiment=X` as `experiment=X` when the command's defaults list holds `experiment: null`: the plain
    form gives that group its option; Hydra would refuse the `+` (the group has its entry already). The
    Lightning-Hydra template's `+experiment=` habit works as its users expect."""
    from omegaconf import OmegaConf

    from cvrun.paths import config_dir

    primary = config_dir() / f"{command}.yaml"
    if not primary.is_file():
        return args
    defaults = OmegaConf.to_container(OmegaConf.load(primary)).get("defaults", [])
    empty = {group for entry in defaults if isinstance(entry, dict) for group, option in entry.items()
             if option is None}
    given = override_args(args) or []
    return [arg[1:] if arg in given and arg.startswith("+") and not arg.startswith("++")
            and arg[1:].split("=", 1)[0] in empty else arg for arg in args]


def group_options(group: str) -> list[str]:
    """The options of a config group: its YAML files in cvrun's configs/ and the user's config folders, and
    the options that plugins store in Hydra's ConfigStore (a regime of your own needs no YAML)."""
    from hydra.core.config_store import ConfigStore

    from cvrun.paths import option_files

    stored = ConfigStore.instance().repo.get(group, {})
    names = set(option_files(group))
    names |= {name.removesuffix(".yaml") for name in stored if not name.removesuffix(".yaml").endswith("_schema")}
    return sorted(names)


def group_names() -> list[str]:
    from cvrun.paths import config_groups

    return config_groups()


def unknown_option(group: str, option: str, options: list[str]) -> str:
    close = difflib.get_close_matches(option, options, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown {group} '{option}'; valid {group} options: {', '.join(options)}{hint}"


def suggest_key(key: str, keys: list[str]) -> str | None:
    """The config key or group a misspelt or shortened `key` most likely means."""
    candidates = [*keys, *group_names()]
    by_last_part = [k for k in candidates if k.rsplit(".", 1)[-1] == key]
    if len(by_last_part) == 1:  # `epochs` -> trainer.epochs
        return by_last_part[0]
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.7)
    return close[0] if close else None


def explain(arg: str, next_arg: str | None, keys: list[str], reason: str) -> str:
    """One line on why Hydra cannot read `arg`, and the form that would be right."""
    if "=" not in arg and not arg.startswith("~"):
        key, colon, value = arg.partition(":")
        if not colon and next_arg is not None and "=" not in next_arg:
            value = next_arg
        right = suggest_key(key, keys) or key
        return f"'{arg}' is not an override; write key=value, e.g. {right}={value or 'VALUE'}"
    key, _, value = arg.partition("=")
    if not value.isascii():
        return (f"'{arg}': outside quotes Hydra reads only ASCII characters; quote the value, "
                f"e.g. \"{key}='{value}'\"")
    if value.count("[") != value.count("]") or value.count("{") != value.count("}"):
        return f"'{arg}': a bracket is not closed; write a list as {key}=[a,b]"
    if value.startswith(",") or value.endswith(",") or ",," in value:
        return f"'{arg}': a comma list has an empty item; write {key}=a,b (with -m, one job per value)"
    return (f"cannot read the override '{arg}' ({reason}); write key=value, and quote a value with "
            f"special characters: {key}='...'")


def parse(overrides: list[str], keys: list[str]) -> list[Any]:
    """Hydra's parse of the overrides; a UserError naming the first one it cannot read."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    parsed = []
    for i, arg in enumerate(overrides):
        try:
            parsed += parser.parse_overrides([arg])
        except HydraException as err:
            reason = next((line for line in str(err).splitlines() if line.strip()), "").strip()
            reason = reason.removeprefix(f"Error parsing override '{arg}'").strip() or reason
            next_arg = overrides[i + 1] if i + 1 < len(overrides) else None
            raise UserError(explain(arg, next_arg, keys, reason)) from None
    return parsed


def preflight(command: str, args: list[str], check_job: Callable[[Any], None] | None = None) -> None:
    """Check group options, key names and values before Hydra composes anything, then compose the config
    as Hydra will, validate it and hand it to the command's `check_job`: every mistake is one line before
    a run folder exists."""
    from cvrun.config import OPTION_SECTIONS, SCHEMAS, schema_keys

    overrides = override_args(args)
    if not overrides or command not in SCHEMAS:  # commands without Hydra parse their own arguments
        return
    keys = list(schema_keys(SCHEMAS[command]))
    groups = group_names()
    parsed = parse(overrides, keys)
    for override in parsed:
        key = override.key_or_group
        if key.startswith("hydra") or override.is_delete():
            continue
        values = sweep_values(override)
        if key in groups:
            options = group_options(key)
            for value in values:
                for option in value.strip("[]").split(",") if key == "logger" else [value]:
                    if option.strip() and option.strip() not in options:
                        raise UserError(unknown_option(key, option.strip(), options))
        elif override.is_add():
            continue  # a key of the user's own (+key=value): the composition below checks it
        elif key.split(".")[0] in OPTION_SECTIONS:
            continue  # its keys depend on the option chosen: the composition below checks them
        elif key not in keys and not any(k.startswith(key + ".") for k in keys):
            close = suggest_key(key, keys)
            typed = command.replace("_", "-")  # the command as typed: check_data is check-data
            hint = f"did you mean '{close}'?" if close else f"see `cvrun {typed} --cfg job` for all keys"
            raise UserError(f"unknown config key '{key}'; {hint}")
        else:
            for value in values:
                check_value(SCHEMAS[command], key, value)
    compose_check(command, parsed, check_job)


def sweep_values(override: Any) -> list[str]:
    """The values an override gives, as strings: a sweep's each (an interval of an Optuna search: its ends)."""
    if override.is_interval_sweep():
        interval = override.value()
        return [str(interval.start), str(interval.end)]
    if override.is_sweep_override():
        return list(override.sweep_string_iterator())
    return [override.get_value_element_as_str()]


# Combinations of a sweep's values composed by the check; a larger sweep is checked on its first ones.
MAX_CHECKED_JOBS = 64


def compose_check(command: str, parsed: list[Any], check_job: Callable[[Any], None] | None = None) -> None:
    """Compose each job's config as Hydra will and validate it; a Hydra or schema error becomes one line.
    `check_job` then checks what the command can know of a job before its folder exists."""
    import itertools

    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from cvrun.commands import register_schemas
    from cvrun.config import SCHEMAS, validate
    from cvrun.paths import config_dir, config_sources

    choices = [[override.input_line] if not override.is_sweep_override() else
               [f"{'+' if override.is_add() else ''}{override.key_or_group}={value}"
                for value in sweep_values(override)] for override in parsed
               if override.key_or_group != "hydra.searchpath"]
    # The user's config folders (--config-dir's too, with absolute paths), where Hydra will look for them.
    sources = config_sources()
    searchpath = [f"hydra.searchpath=[{','.join(map(hydra_quote, sources))}]"] if sources else []
    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name=command):
        for job in itertools.islice(itertools.product(*choices), MAX_CHECKED_JOBS):
            try:
                cfg = compose(config_name=command, overrides=[*job, *searchpath])
            except (HydraException, OmegaConfBaseException) as err:
                raise UserError(composition_error(err)) from None
            typed = validate(cfg, SCHEMAS[command])
            if check_job is not None:
                check_job(typed)


def composition_error(err: BaseException) -> str:
    """One line for Hydra's report of a config that cannot be composed: the key, and what is wrong with it."""
    from dataclasses import is_dataclass

    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

    from cvrun.config import OPTION_SECTIONS, keys_taken

    cause: BaseException | None = err
    while cause is not None and not (isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None)):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
    key, kind = cause.full_key, getattr(cause, "object_type", None)
    if isinstance(cause, (ConfigKeyError, AttributeError)):
        section = key.split(".")[0]
        chosen = getattr(cause, "parent_node", None)  # the option's node: its name is the option chosen
        chosen = chosen.get("name") if hasattr(chosen, "get") else None
        takes = f"; {keys_taken(section, kind, chosen)}" if section in OPTION_SECTIONS and is_dataclass(kind) else ""
        return f"unknown config key '{key}'{takes}"
    return f"{key}: {str(getattr(cause, 'msg', cause)).splitlines()[0]}"


def check_value(schema: type, key: str, value: str) -> None:
    """Type and range of one `key=value` against the schema, as validate() would judge it."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from cvrun.config import check_values

    if value == "":
        raise UserError(f"'{key}=' has no value; write {key}=VALUE")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist([f"{key}={value}"]))
    except OmegaConfBaseException as err:
        reason = str(getattr(err, "msg", err)).splitlines()[0]
        raise UserError(f"{key}={value}: {reason}") from None
    check_values(merged)
