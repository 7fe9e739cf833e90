"""`cvrun COMMAND ...`: the first argument picks a Hydra app, the rest go to Hydra.

Each command is its own `@hydra.main` app with its own primary config
(configs/train.yaml, configs/eval.yaml, ...), so `-m`, launchers, `--cfg` and
Hydra's output folders work as Hydra documents them. This module imports
neither torch nor Hydra until a command runs: `cvrun --help` stays instant.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import os
import sys
from typing import Any, Callable, Iterator

from cvrun.errors import UserError
from cvrun.overrides import (check_one_mode, plain_group_choices, preflight, quote_paths, split_positional,
                             user_config_sources)
from cvrun.parallel import adopt_slurm_tasks, world_size
from cvrun.paths import use_config_sources

# name -> (one-line description, positional argument Hydra gets as key=value, or None; module)
COMMANDS = {
    "train": ("train one run, or a sweep with -m", None, "cvrun.commands.train"),
    "eval": ("evaluate a finished run's best checkpoint: cvrun eval RUN_DIR [split=test|val] [--tta]",
             "run_dir", "cvrun.commands.eval"),
    "reproduce": ("re-run a saved config and compare metrics: cvrun reproduce RUN_DIR [--check] [KEY=VALUE...]",
                  None, "cvrun.commands.reproduce"),
    "summarize": ("table of all runs under DIR: cvrun summarize DIR [--sort KEY] [--format table|csv|md] [--html]",
                  None, "cvrun.commands.summarize"),
    "info": ("parameters, multiply-accumulates, receptive field: cvrun info model=... [dataset=...]",
             None, "cvrun.commands.info"),
    "preview": ("PNG grid of augmented training images: cvrun preview [aug=...] [dataset=...]",
                None, "cvrun.commands.preview"),
    "inspect": ("per-class metrics, confusion, mistakes, Grad-CAM, calibration, embedding: "
                "cvrun inspect RUN_DIR [split=test|val] -> RUN_DIR/inspect_<split>/report.html", None,
                "cvrun.commands.inspect"),
    "predict": ("classify image files: cvrun predict RUN_DIR|MODEL.onnx PATH... [--top-k K] [--tta] [--out FILE] "
                "[--min-confidence P]", None, "cvrun.commands.predict"),
    "export": ("ONNX or torch.export file with its metadata, verified: cvrun export RUN_DIR [--format onnx|pt2] "
               "[--dynamic-batch]", None, "cvrun.commands.export"),
    "compare": ("settings over seeds: means, 95% intervals, paired tests, verdicts: cvrun compare DIR... [--by KEY] "
                "[--baseline VALUE] [--metric test_acc1] [--format table|csv|md|latex] [--html]", None,
                "cvrun.commands.compare"),
    "calibrate": ("fit a temperature on the validation split, used by eval, inspect, predict and export: "
                  "cvrun calibrate RUN_DIR -> RUN_DIR/calibration.json", None, "cvrun.commands.calibrate"),
    "check-data": ("counts, unreadable files, sizes, exact and near duplicates within and across splits (exit 1 when "
                   "train and test share images): cvrun check-data [dataset=...] [near_threshold=BITS] [out=DIR]",
                   None, "cvrun.commands.check_data"),
    "shard": ("write an image-folder tree or a CSV's images as tar shards for dataset=shards: cvrun shard SRC OUT "
              "[--per-shard N] [--seed S] [dataset.KEY=VALUE...]", None, "cvrun.commands.shard"),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: cvrun COMMAND [OVERRIDES...]", "",
             "Image-classification experiment runner. Commands:"]
    for name, (text, *_) in COMMANDS.items():
        lines.append(f"  {name:<{width}}  {text}")
    lines += ["", "Overrides use Hydra's grammar (key=value, group=option, -m for sweeps).",
              "`cvrun COMMAND --help` lists every config group and option of a command.",
              "Tab completion: eval \"$(cvrun -sc install=bash)\" (zsh too; fish: cvrun -sc install=fish | source)."]
    return "\n".join(lines)


def fail(message: str, code: int = 2) -> int:
    print(f"cvrun: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    adopt_slurm_tasks()
    try:
        code = run_command(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()
        if world_size() > 1 and argv is None:
            leave_without_teardown(code)
        return code
    except BrokenPipeError:
        # `cvrun --help | head -3`: the reader has what it wanted. Python's advice for a closed
        # pipe: point stdout at /dev/null so that the exit's own flush raises nothing, exit 1.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        use_config_sources(None, [])  # the user's config folders were this command line's, no later one's


def leave_without_teardown(code: int) -> None:
    """End a torchrun process once its run has ended and its process group is destroyed, skipping the
    interpreter's teardown: there, with gloo, a rank at times aborted ("terminate called without an active
    exception", SIGABRT: a C++ thread still joinable as objects were destroyed) after a run that had ended
    well, failing the whole job. Every file is written and closed by then; the logs and streams are flushed."""
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_command(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args[0].split("=", 1)[0] in COMPLETION_FLAGS:  # what the installed completion runs: cvrun -sc query=bash
        return guarded(lambda: shell_completion(None, args))
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return fail(f"unknown command '{command}'{hint}; commands: {', '.join(COMMANDS)}")
    _, positional, module_name = COMMANDS[command]
    app = hydra_app(command)
    rest = quote_paths(split_positional(rest, positional))
    module = importlib.import_module(module_name)
    from cvrun.io import StorageError
    from cvrun.paths import config_dir
    from cvrun.registry import load_plugins

    try:
        load_plugins()
        use_config_sources(*user_config_sources(rest))
        rest = plain_group_choices(app, rest)
        if any(arg.split("=", 1)[0] in COMPLETION_FLAGS for arg in rest):
            return shell_completion(command, rest)
        if "--help" not in rest and "-h" not in rest:
            if (config_dir() / f"{app}.yaml").is_file():  # a Hydra app: its flags are Hydra's
                check_one_mode(rest)
            rest = getattr(module, "expand_args", list)(rest)  # a short form such as trainer.seeds=N, rewritten
            preflight(app, rest, getattr(module, "check_job", None))
            rest = getattr(module, "prepare_args", list)(rest)
    except (UserError, StorageError) as err:
        return fail(str(err), err.exit_code)
    sys.argv = [f"cvrun {command}"] + rest
    return module.run_app()


def hydra_app(command: str) -> str:
    """The name of a command's Hydra app: its primary config (configs/<app>.yaml) and config.SCHEMAS key. A
    Python name (check-data's is check_data), as the schema it is stored under must be."""
    return command.replace("-", "_")


def guarded(task: Callable[[], int]) -> int:
    """task(), a UserError in it printed in one line (exit status 2)."""
    try:
        return task()
    except UserError as err:
        return fail(str(err), err.exit_code)


# Hydra's shell completion: `cvrun -sc install=bash` prints the script that makes Tab call
# `cvrun -sc query=bash` with the typed line in COMP_LINE.
COMPLETION_FLAGS = ("-sc", "--shell-completion")
COMPLETION_ACTIONS, SHELLS = ("install", "uninstall", "query"), ("bash", "zsh", "fish")


def shell_completion(command: str | None, args: list[str]) -> int:
    """`-sc ACTION=SHELL`, before or after the command: Hydra's install and uninstall scripts for the program
    `cvrun`, and its answers to a query for the command the typed line names (command names before one is)."""
    from cvrun.overrides import flag_value

    request = flag_value(args, COMPLETION_FLAGS, "ACTION=SHELL") or ""
    action, _, shell = request.partition("=")
    if action not in COMPLETION_ACTIONS or shell not in SHELLS:
        raise UserError(f"-sc {request}: write -sc ACTION=SHELL with ACTION one of {', '.join(COMPLETION_ACTIONS)} "
                        f"and SHELL one of {', '.join(SHELLS)}, e.g. eval \"$(cvrun -sc install=bash)\"")
    if action != "query":
        return completion_app("train", [f"{action}={shell}"])
    line = os.environ.get("COMP_LINE")
    if line is None:
        raise UserError(f"-sc query={shell} answers the line typed, in COMP_LINE; the script of "
                        f"`cvrun -sc install={shell}` sets it on each Tab")
    words = line.split()
    if command is not None and words[1:2] != [command]:  # `cvrun train -sc query=...` for a line without it
        words.insert(1, command)
    if len(words) < 2 or (len(words) == 2 and not line.endswith(" ")):
        typed = words[1] if len(words) == 2 else ""
        print(SEPARATORS[shell].join(name for name in COMMANDS if name.startswith(typed)))
        return 0
    from cvrun.paths import config_dir

    if not (config_dir() / f"{hydra_app(words[1])}.yaml").is_file():  # no Hydra app: the shell completes file names
        return 0
    os.environ["COMP_LINE"] = " ".join([words[0], *words[2:]]) + (" " if line.endswith(" ") else "")
    return completion_app(hydra_app(words[1]), [f"query={shell}"], config_dir_args(words[2:]))


SEPARATORS = {"bash": " ", "zsh": " ", "fish": "\n"}


def config_dir_args(words: list[str]) -> list[str]:
    """The typed line's --config-dir, for Hydra to find the user's options in (none while it is unfinished)."""
    from cvrun.overrides import CONFIG_DIR_FLAGS, flag_value

    try:
        folder = flag_value(words, CONFIG_DIR_FLAGS)
    except UserError:
        return []
    return ["--config-dir", folder] if folder is not None and os.path.isdir(folder) else []


def completion_app(command: str, request: list[str], extra: list[str] = ()) -> int:
    """Hydra's app on the command's primary config, run with `-sc REQUEST` under the program name `cvrun` (the
    name the install script registers and calls back); the schemas cvrun stores beside the options left out of
    the answer. Nothing of torch is imported: a Tab waits for no model code."""
    import io

    import hydra

    from cvrun.paths import config_dir
    from cvrun.registry import load_plugins

    load_plugins()  # their options are completed too
    sys.argv = ["cvrun", *extra, "-sc", *request]
    app = hydra.main(config_path=str(config_dir()), config_name=command, version_base="1.3")(lambda cfg: None)
    answer = io.StringIO()
    with stand_ins(command), contextlib.redirect_stdout(answer):
        try:
            app()
        except SystemExit as exit_:
            return exit_.code if isinstance(exit_.code, int) else 1
    text = answer.getvalue()
    if request[0].startswith("query="):
        separator = SEPARATORS[request[0].partition("=")[2]]
        text = separator.join(word for word in text.split() if not word.endswith("_schema")) + "\n"
    sys.stdout.write(text)
    return 0


@contextlib.contextmanager
def stand_ins(command: str) -> Iterator[None]:
    """What the configs name, for Hydra to compose the line being completed without cvrun's registries (they
    import torch): in Hydra's ConfigStore each command's keys with their defaults as plain values, and an empty
    node for an option's schema not stored already (the option's YAML gives its keys); for each resolver the
    command's primary config names and none registered, one giving its argument (or an empty list). All gone
    afterwards, for a process that runs a command next (a notebook, the tests)."""
    import re

    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from cvrun.config import SCHEMAS
    from cvrun.paths import config_dir, config_search_dirs

    missing = {name for name in re.findall(r"\$\{(\w+):", (config_dir() / f"{command}.yaml").read_text())
               if not OmegaConf.has_resolver(name)}
    for name in missing:
        OmegaConf.register_new_resolver(name, lambda *args: args[0] if args else [])
    nodes = {("", f"{name}_schema"): OmegaConf.to_container(OmegaConf.structured(schema))
             for name, schema in SCHEMAS.items()}
    for folder in config_search_dirs():
        for path in folder.glob("*/**/*.yaml"):
            group = path.parent.relative_to(folder).as_posix()
            if stored_node(group, f"{path.stem}_schema") is None:
                nodes[group, f"{path.stem}_schema"] = {}
    replaced = {where: stored_node(*where) for where in nodes}
    for (group, name), node in nodes.items():
        ConfigStore.instance().store(group=group or None, name=name, node=node)
    try:
        yield
    finally:
        for (group, name), node in replaced.items():
            entries = stored_group(group)
            if node is None:
                entries.pop(f"{name}.yaml", None)
            else:
                entries[f"{name}.yaml"] = node
        for group in sorted({group for group, _ in replaced}, key=len, reverse=True):  # no group left empty
            parent, _, last = group.rpartition("/")
            if group and not stored_group(group):
                stored_group(parent).pop(last, None)
        for name in missing:
            OmegaConf.clear_resolver(name)


def stored_group(group: str) -> dict:
    """The entries of a group in Hydra's ConfigStore ("": its top level; {} for a group it does not hold)."""
    from hydra.core.config_store import ConfigStore

    entries = ConfigStore.instance().repo
    for part in filter(None, group.split("/")):
        entries = entries.get(part, {})
    return entries


def stored_node(group: str, name: str) -> Any:
    return stored_group(group).get(f"{name}.yaml")
