"""`cvrun COMMAND ...`: the first argument picks a Hydra app, the rest go to Hydra.

Each command is its own `@hydra.main` app with its own primary config
(configs/train.yaml, configs/eval.yaml, ...), so `-m`, launchers, `--cfg` and
Hydra's output folders work as Hydra documents them. This module imports
neither torch nor Hydra until a command runs: `cvrun --help` stays instant.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys

from cvrun.errors import UserError
from cvrun.overrides import preflight, quote_paths, split_positional
from cvrun.parallel import adopt_slurm_tasks, world_size

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
}


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
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return fail(f"unknown command '{command}'{hint}; commands: {', '.join(COMMANDS)}")
    _, positional, module_name = COMMANDS[command]
    rest = quote_paths(split_positional(rest, positional))
    module = importlib.import_module(module_name)
    from cvrun.io import StorageError
    from cvrun.registry import load_plugins

    try:
        load_plugins()
        if "--help" not in rest and "-h" not in rest:
            rest = getattr(module, "expand_args", list)(rest)  # a short form such as trainer.seeds=N, rewritten
            preflight(command, rest, getattr(module, "check_job", None))
            rest = getattr(module, "prepare_args", list)(rest)
    except (UserError, StorageError) as err:
        return fail(str(err), err.exit_code)
    sys.argv = [f"cvrun {command}"] + rest
    return module.run_app()
