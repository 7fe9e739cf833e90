"""cvrun from Python (a notebook, a script): what the commands do, as functions that return their results.

    from cvrun.api import train, evaluate, predict, load_model
    run = train(["dataset=shapes", "model=lenet5", "trainer.epochs=1"])
    run.run_dir, run.status, run.summary["test_acc1"], run.metrics[-1]["val_acc1"]
    evaluate(run.run_dir)["acc1"]                       # cvrun eval RUN_DIR
    predict(run.run_dir, ["a.png", "b.png"], top_k=3)   # cvrun predict RUN_DIR a.png b.png --top-k 3, as rows
    loaded = load_model(run.run_dir)                    # .model (eval mode, CPU), .transform, .class_names
    logits = loaded.model(loaded.transform("a.png")[None])

`train` takes the overrides `cvrun train` takes, or a config from Hydra's compose API, and runs it through the
same function as the command (cvrun.commands.train.train_composed, which `cvrun train`'s task calls outside a
Hydra job): the same checks, run folder (outputs/DATE/TIME_<regime>_<model>/ under the working folder, unless
hydra.run.dir says otherwise), files and results. Each call is a new run; nothing of one stays in the
process for the next (sys.argv and the logging handlers are left as they were). A mistake raises
cvrun.errors.UserError with the one line the command prints.

`sweep` launches `cvrun train -m OVERRIDES` itself (Hydra's multirun, with its sweepers and launchers) and
returns the sweep folder with its jobs' runs.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from cvrun.commands import register_schemas
from cvrun.errors import UserError

__all__ = ["Run", "Sweep", "LoadedModel", "compose", "train", "sweep", "evaluate", "predict", "load_model"]


@dataclass(frozen=True)
class Run:
    """A run folder and what it holds, read when asked (a run still training shows its progress)."""

    run_dir: Path

    @property
    def summary(self) -> dict[str, Any]:
        """summary.json as a dict ({} before the run has written one)."""
        from cvrun.report.table import read_json

        return read_json(self.run_dir / "summary.json")

    @property
    def status(self) -> str | None:
        """completed, failed, interrupted, pruned or running; None before summary.json exists."""
        return self.summary.get("status")

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """metrics.csv's rows, one per epoch, its numbers as int or float (an empty cell None)."""
        path = self.run_dir / "metrics.csv"
        if not path.is_file():
            return []
        with path.open(newline="") as handle:
            return [{key: number(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def number(text: str) -> Any:
    """A CSV cell as the value it writes: an int, a float, None for an empty cell, else the text."""
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def compose(overrides: Sequence[str] = ()) -> Any:
    """The config `cvrun train OVERRIDES` composes (with its hydra section), after the command line's checks:
    a mistake is a UserError, before anything is written. One run: a sweep (-m) is sweep's. The user's config
    folders (hydra.searchpath=[file://DIR]) are this composition's alone."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from cvrun.commands.train import key_of, prepare_args
    from cvrun.overrides import composition_error, hydra_quote, override_args, quote_paths
    from cvrun.paths import config_dir, config_sources, use_config_sources

    args = quote_paths([str(arg) for arg in overrides])
    if "-m" in args or "--multirun" in args:
        raise UserError("cvrun.api.train runs one run; run a sweep with cvrun.api.sweep")
    flags = [arg for arg in args if arg.startswith("-")]
    if flags:
        raise UserError(f"cvrun.api.train takes overrides (key=value), not {flags[0]}; a config folder of your own "
                        "is hydra.searchpath=[file://DIR]")
    try:
        args = prepare_args(checked_args(args))
        sources = config_sources()  # absolute, where the overrides may name a folder relative to this one
        args = [arg for arg in override_args(args) or [] if key_of(arg) != "hydra.searchpath"]
        searchpath = [f"hydra.searchpath=[{','.join(map(hydra_quote, sources))}]"] if sources else []
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="train"):
            try:
                return hydra_compose("train", overrides=[*args, *searchpath], return_hydra_config=True)
            except (HydraException, OmegaConfBaseException) as err:
                raise UserError(composition_error(err)) from None
    finally:
        use_config_sources(None, [])


def checked_args(args: list[str]) -> list[str]:
    """`cvrun train ARGS` as the command line checks it before Hydra runs (cvrun.cli.run_command's order): the
    user's config folders recorded, `+experiment=X` read as the command does, short forms expanded, every
    override checked and each job composed and checked. A mistake raises UserError."""
    from cvrun.commands.train import check_job, expand_args
    from cvrun.overrides import check_one_mode, plain_group_choices, preflight, user_config_sources
    from cvrun.paths import use_config_sources

    register_schemas()
    use_config_sources(*user_config_sources(args))
    args = plain_group_choices("train", args)
    check_one_mode(args)
    args = expand_args(args)
    preflight("train", args, check_job)
    return args


def train(overrides: Sequence[str] | Any = ()) -> Run:
    """One run of `cvrun train OVERRIDES` (a list of strings), or of a config composed with Hydra's compose API
    (after `import cvrun.api`, whose import puts cvrun's schemas where compose finds them). Returns the Run,
    whatever its status; a UserError or the run's own failure is raised, Ctrl-C as KeyboardInterrupt."""
    from omegaconf import DictConfig

    from cvrun.commands.train import train_composed

    cfg = overrides if isinstance(overrides, DictConfig) else compose(overrides)
    try:
        run_dir, _ = train_composed(cfg)
    except SystemExit as exit_:
        if exit_.code == 130:  # interrupted: the run folder says how to carry it on
            raise KeyboardInterrupt from None
        raise
    return Run(run_dir)


@dataclass(frozen=True)
class Sweep:
    """A sweep folder and its jobs' runs (jobs.jsonl, which each job's end appends to)."""

    sweep_dir: Path

    @property
    def runs(self) -> list[Run]:
        """The jobs' runs in job order."""
        path = self.sweep_dir / "jobs.jsonl"
        jobs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
        return [Run(Path(job["run_dir"])) for job in sorted(jobs, key=lambda job: job["num"])]


def sweep(overrides: Sequence[str]) -> Sweep:
    """`cvrun train -m OVERRIDES` (comma lists, hparams_search=..., hydra/launcher=...) in its own sweep folder:
    hydra.sweep.dir, else a new one as train.yaml names it. A mistake raises UserError before anything is written;
    a job that fails is recorded as such and the sweep goes on (its Run says why). sys.argv and the logging
    handlers Hydra's jobs set up are put back as they were."""
    from omegaconf import OmegaConf

    from cvrun.cli import run_command
    from cvrun.commands.train import composed_folder, key_of, override_value
    from cvrun.overrides import hydra_quote, quote_paths
    from cvrun.paths import use_config_sources

    args = ["-m", *quote_paths([str(arg) for arg in overrides if arg not in ("-m", "--multirun")])]
    try:
        checked_args(args)
    finally:
        use_config_sources(None, [])
    given = [override_value(arg) for arg in args if key_of(arg) == "hydra.sweep.dir"]
    folder = Path(given[-1]).expanduser().absolute() if given else composed_folder(OmegaConf.create(), None, "sweep")
    args = [arg for arg in args if key_of(arg) != "hydra.sweep.dir"]
    with process_state_kept():
        code = run_command(["train", *args, f"hydra.sweep.dir={hydra_quote(str(folder))}"])
    if code == 130:
        raise KeyboardInterrupt
    if code not in (0, 1):  # 1: a job failed, which its run records
        raise UserError(f"cvrun train -m refused the sweep (exit status {code}; the line above says why)")
    return Sweep(folder)


@contextmanager
def process_state_kept() -> Iterator[None]:
    """sys.argv and the root logger's handlers and level as they were before the block (Hydra's jobs replace
    the handlers with their console and train.log), and no config folders of the user's recorded after it."""
    from cvrun.paths import use_config_sources

    root = logging.getLogger()
    argv, handlers, level = list(sys.argv), list(root.handlers), root.level
    try:
        yield
    finally:
        use_config_sources(None, [])
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
        sys.argv[:] = argv


def evaluate(run_dir: str | Path, split: str = "test", tta: bool = False, device: str = "auto",
             batch_size: int | None = None, dataset_root: str | None = None) -> dict[str, Any]:
    """`cvrun eval RUN_DIR split=SPLIT`: the best checkpoint scored on the split. Returns acc1, acc5 (percent),
    loss, samples and the confusion matrix; with tta=True also `tta`, the same for the flip-averaged model."""
    from omegaconf import OmegaConf

    from cvrun.commands.eval import evaluate_run
    from cvrun.config import EvalConfig

    cfg = OmegaConf.structured(EvalConfig)
    cfg.run_dir, cfg.split, cfg.tta, cfg.device, cfg.batch_size = str(run_dir), split, tta, device, batch_size
    cfg.progress = False
    if dataset_root is not None:
        cfg.dataset.root = dataset_root
    return evaluate_run(cfg)


def predict(source: str | Path, paths: Sequence[str | Path], top_k: int = 5, tta: bool = False,
            batch_size: int = 256, min_confidence: float | None = None) -> list[dict[str, Any]]:
    """`cvrun predict SOURCE PATHS --top-k K` without the CSV: a run folder or an exported model.onnx, and image
    files, folders or .txt lists of paths. One row per image, as predictions.csv holds it: path, top1,
    top1_prob, ... topK, topK_prob (probabilities as text with six decimals), error ("" when read) and with
    min_confidence `abstained` (yes when the top-1 probability is below it)."""
    from cvrun.commands.predict import checked_inputs, predict_files

    predictor, images = checked_inputs(Path(source), [str(path) for path in paths], top_k, batch_size, min_confidence)
    return predict_files(predictor, images, top_k, tta, batch_size, min_confidence)


@dataclass
class LoadedModel:
    """A run's best weights as an nn.Module in eval mode (on `device`), the transform its inputs take and
    its classes, in the order of the model's outputs."""

    model: Any
    transform: Any
    class_names: list[str]


class ImageTransform:
    """An image file path, or an RGB uint8 HxWxC array, as the model takes it: resized to the run's image size
    as cvrun predict sizes it (above 64 px: the centre crop of the shorter side resized), then normalised; a float32 CxHxW tensor (add the batch dimension)."""

    def __init__(self, card: Any):
        import torch

        from cvrun.engine.evaluate import Normalize

        self.sizing = card.sizing
        self.normalize = Normalize(card.mean, card.std, torch.device("cpu"))

    def __call__(self, image: Any) -> Any:
        from cvrun.data.loaders import to_chw

        if isinstance(image, (str, Path)):
            path, image = str(image), self.sizing.read(str(image))
            if image is None:
                raise UserError(f"{path} is not an image OpenCV can read")
        return self.normalize(to_chw(self.sizing.evaluate(image))[None])[0]


def load_model(run_dir: str | Path, device: str = "cpu") -> LoadedModel:
    """A finished (or still training) run's best checkpoint: the model, its input transform, its classes."""
    import torch

    from cvrun.commands.eval import load_run
    from cvrun.engine.inference import ModelCard
    from cvrun.models.pretrained import rebuild_model

    cfg, state = load_run(Path(run_dir))
    card = ModelCard.of_run(cfg, state)
    model = rebuild_model(cfg, state).to(torch.device(device)).eval()
    return LoadedModel(model, ImageTransform(card), card.class_names)


# cvrun's schemas in Hydra's ConfigStore, where Hydra's compose API finds them when it composes cvrun's configs.
register_schemas()
