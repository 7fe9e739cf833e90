"""The one training loop every regime goes through.

A regime (cvrun/regimes/base.py) prepares its data, models and loaders and defines its training
step; the trainer owns what is common to all: device, autocast and GradScaler, DistributedDataParallel
around every module that trains, gradient accumulation and clipping, the schedule, EMA, the divergence
check, early stopping, checkpoints of every module with the random states, signals, validation, the
test of the best weights, and the run's events (engine/events.py), which callbacks turn into files.

What fit() reads from a prepared regime:

    model                  the classifier that is validated, kept as best and tested (its EMA with
                           trainer.ema_decay)
    trained                {name: module}: every module that trains by gradient, "model" among them
    train_loaders          {name: loader}: a step takes one batch of each; the first sets the epoch's
                           length (or trainer.steps_per_epoch does), the others start again when spent
    val_loader, test_loader, normalize (a loader's images -> model input on the device)
    class_names, image_size, splits, summary_extra, result_columns, unused_parameters
    param_groups()         the optimiser's parameter groups
    epoch_start(epoch)     before each epoch trains (a transfer regime: unfreeze the backbone)
    training_step(trained, batches, ema) -> (loss, sums): runs inside the (distributed) forward
    epoch_metrics(sums)    the epoch's summed step values -> metrics.csv columns (train_acc1, ...)
    test(model)            {"acc1", "acc5", "loss", "samples"} on the test split
    finished(summary, rows) the regime's results once the run is tested (an old task's score, final rates)

Per step the loop keeps its work on the device: sums are tensors, and the loss is read once per
trainer.log_every_n_steps steps.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from cvrun import parallel
from cvrun.config import MONITOR_NAMES
from cvrun.data.splits import split_changes
from cvrun.engine import distributed
from cvrun.engine.ema import build_ema, log_ema_plan
from cvrun.engine.evaluate import balanced_acc1, evaluate, macro_f1, per_class_acc1
from cvrun.engine.events import Callback, EndRun, Events
from cvrun.engine.optim import build_optimizer
from cvrun.engine.sched import build_scheduler
from cvrun.engine.rundir import RunFolder, resume_hint, versions
from cvrun.engine.runtime import Interrupted, autocast, autocast_dtype, select_device
from cvrun.errors import ResumeRefused, UserError
from cvrun.io import StorageError, load_checkpoint
from cvrun.models.registry import Classifier, count_parameters

log = logging.getLogger("cvrun")

# A dataset.std below this (on the 0-1 scale; real images have about 0.2-0.3) blows the inputs up.
TINY_STD = 1e-3


class Diverged(Exception):
    """The training loss became non-finite."""


def place_model(model: Classifier, tcfg: Any, device: torch.device) -> Classifier:
    """The model on its device, in channels_last memory and compiled when the trainer config asks."""
    model = model.to(device)
    if tcfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if tcfg.compile:
        # In place: training, evaluation and EMA share the compiled forward, and the
        # state_dict keys stay those of the plain model.
        model.compile()
    return model


def rng_states() -> dict[str, Any]:
    """Every global random state training draws from (the data order and augmentation seeds come from
    (trainer.seed, epoch) and need none)."""
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    # NumPy's key array travels as a tensor: weights_only loading accepts tensors, not arrays.
    states = {"torch": torch.get_rng_state(), "python": random.getstate(),
              "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gauss)}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    kind, keys, position, has_gauss, cached_gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def check_same_splits(recorded: dict[str, Any] | None, current: dict[str, Any], run_path: Path) -> None:
    """A resume must see the data the run trained on: the same images, labels and order in every split."""
    changes = split_changes(recorded or {}, current) if recorded is not None else []
    if changes:
        more = f" (and {len(changes) - 5} more changes)" if len(changes) > 5 else ""
        raise ResumeRefused(f"trainer.resume={run_path}: the data differ from what the run trained on: "
                            f"{'; '.join(changes[:5])}{more}; put the data back as it was, or start a new run")


def check_trainable(regime: Any, batch_size: int, steps: int) -> None:
    """A run that would take no optimisation step, or steps batch norm cannot take, is refused before it starts."""
    loader = next(iter(regime.train_loaders.values()))
    if steps == 0:
        raise UserError(f"the training set gives no optimisation step: {len(loader.dataset)} image(s) at "
                        f"trainer.batch_size={batch_size} (a last batch of a single image is left out: batch "
                        "norm cannot train on it); train on more images (dataset.subset, dataset.labeled_per_class)")
    # Cached features feed the head alone, which holds no batch norm.
    with_batch_norm = not regime.model.takes_features and any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in regime.model.train().modules())
    if loader.batch_size == 1 and with_batch_norm:
        raise UserError(f"trainer.batch_size={batch_size} gives steps of a single image, on which batch norm "
                        "cannot train; use trainer.batch_size=2 or more")


def check_early_stop_has_validation(regime: Any, tcfg: Any) -> None:
    """Early stopping and a monitor other than the default watch the validation split: a run without one is
    refused before it starts (without one, the default keeps the last epoch as best.pt)."""
    held_out = f"this run has no validation split (dataset.val_fraction={regime.cfg.dataset.val_fraction})"
    if tcfg.early_stop_patience and regime.val_loader is None:
        raise UserError(f"trainer.early_stop_patience={tcfg.early_stop_patience} stops on the "
                        f"{MONITOR_NAMES[tcfg.monitor]}, but {held_out}; hold images out with "
                        "dataset.val_fraction=0.1, or set trainer.early_stop_patience=0")
    if tcfg.monitor != "val_acc1" and regime.val_loader is None:
        raise UserError(f"trainer.monitor={tcfg.monitor} chooses best.pt by the {MONITOR_NAMES[tcfg.monitor]}, but "
                        f"{held_out}; hold images out with dataset.val_fraction=0.1, or leave trainer.monitor out")


def refuse_resume_without_last(run: RunFolder) -> None:
    """A resume needs checkpoints/last.pt once the run has trained: without it the run would start again at
    epoch 1 and overwrite its epochs and best.pt. (A run stopped before its first epoch has nothing to lose.)"""
    left = [name for name in ("checkpoints/best.pt", "metrics.csv") if (run.path / name).is_file()]
    epochs_run = run.read_summary().get("epochs_run")
    if epochs_run:
        left.append(f"summary.json's {epochs_run} epoch(s)")
    if left:
        raise ResumeRefused(f"trainer.resume={run.path}: checkpoints/last.pt is missing, so the trained epochs "
                            f"({', '.join(left)}) cannot be carried on; start anew in another folder (leave "
                            "trainer.resume out), or put last.pt back")


def to_device(value: Any, device: torch.device) -> Any:
    """A loader's batch (tensors, or tuples and dicts of them) on the device."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {key: to_device(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(item, device) for item in value)
    return value


def batch_size_of(batch: Any) -> int:
    """How many images a batch holds (its first tensor's length)."""
    return len(batch[0]) if isinstance(batch, (list, tuple)) else len(batch)


def cycled(loader: DataLoader, epoch: int) -> Iterator[Any]:
    """The loader's batches for one epoch, starting again (in another seeded order) when it is spent:
    the order depends on (trainer.seed, epoch, pass) alone, so a resumed run sees what an uninterrupted one did."""
    for repeat in range(1_000_000):
        loader.sampler.set_epoch(epoch, repeat)
        yield from loader


class StepModule(nn.Module):
    """One training step as one module: DistributedDataParallel wraps it whole, so the gradients of every
    trained module (LwF's old output layer too) are reduced over the processes."""

    def __init__(self, regime: Any, trained: dict[str, nn.Module]):
        super().__init__()
        self.trained = nn.ModuleDict(trained)
        self.regime = regime  # not a Module: not registered

    def forward(self, batches: dict[str, Any], ema: nn.Module | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.regime.training_step(self.trained, batches, ema)


class Trainer:
    def __init__(self, cfg: Any, run: RunFolder, callbacks: Sequence[Callback] = ()):
        self.cfg = cfg
        self.run = run
        self.device = select_device(cfg.trainer.device)
        self.dtype = autocast_dtype(cfg.trainer.precision, self.device)
        self.events = Events(callbacks)

    def start_summary(self, params: int, trainable: int, facts: dict[str, Any]) -> dict[str, Any]:
        """summary.json as the run starts: what was there (a reproduce's note), the run's facts, the regime's."""
        return {**self.run.read_summary(), "status": "running", "reason": None, "seed": self.cfg.trainer.seed,
                "params": params, "trainable_params": trainable, "world_size": parallel.world_size(),
                "device": str(self.device), "versions": versions(), **facts}

    def fit(self, regime: Any) -> dict[str, Any]:
        """Train, validate every epoch, checkpoint, test the best weights; return summary.json.

        Every ending is recorded: completed, interrupted (SIGINT/SIGTERM, exit 130), failed (a diverged
        loss, exit 1; a full or read-only disk, StorageError).
        """
        tcfg = self.cfg.trainer
        started = time.time()
        steps = tcfg.steps_per_epoch or len(next(iter(regime.train_loaders.values())))
        check_trainable(regime, tcfg.batch_size, steps)
        check_early_stop_has_validation(regime, tcfg)
        last = self.run.checkpoints / "last.pt"
        if tcfg.resume is not None and not last.is_file():
            refuse_resume_without_last(self.run)
        resumed = load_checkpoint(last) if tcfg.resume is not None and last.is_file() else None
        if resumed is not None:
            check_same_splits(resumed.get("splits"), regime.splits, self.run.path)
        regime.model = place_model(regime.model, tcfg, self.device)
        trained = {"model": regime.model, **{k: m.to(self.device) for k, m in regime.trained.items() if k != "model"}}
        counts = [count_parameters(m) for m in trained.values()]
        summary = self.start_summary(sum(c[0] for c in counts), sum(c[1] for c in counts), regime_facts(regime))
        self.events.emit("on_run_start", summary)
        loop = _Loop(self, regime, trained, steps, started)
        if parallel.is_main():
            self.log_header(regime, summary, steps)
            if loop.ema is not None:
                log_ema_plan(tcfg.ema_decay, tcfg.epochs * loop.updates_per_epoch)
        try:
            if resumed is not None:
                loop.resume_from(resumed)
            else:
                loop.save_last()  # an interrupt in the first epoch leaves a last.pt to carry on from
            loop.run_epochs()
            loop.stage = "testing"
            test = loop.test_best()
            loop.check_finite_test(test)
            summary.update(test_acc1=round(test["acc1"], 2), test_acc5=round(test["acc5"], 2),
                           test_loss=round(test["loss"], 4), test_samples=test["samples"],
                           test_balanced_acc1=round(balanced_acc1(test["confusion"]), 2),
                           test_macro_f1=round(macro_f1(test["confusion"]), 2),
                           test_per_class_acc1=per_class_acc1(test["confusion"], regime.class_names))
            summary.update(regime.finished(summary, loop.rows))
            loop.stage = "finishing"
            self.end(summary, loop, "completed", None)
        except EndRun as ended:  # a callback stopped it after an epoch: best.pt holds the best so far, untested
            self.end(summary, loop, ended.status, str(ended))
        except Interrupted as err:
            self.end(summary, loop, "interrupted", loop.interrupt_reason(str(err)), quiet=True)
            raise SystemExit(130) from None
        except Diverged as err:
            self.end(summary, loop, "failed", str(err), quiet=True)
            raise SystemExit(1) from None
        except StorageError as err:
            if loop.epoch_done == tcfg.epochs or loop.stopped_early:  # the weights exist: where, and how to score
                tested = f"test top-1 {summary['test_acc1']}%, " if "test_acc1" in summary else ""
                err = err.with_advice(f"training finished ({tested}best weights in {self.run.checkpoints / 'best.pt'}); "
                                      f"once there is room, `cvrun eval {self.run.path}` gives the test score")
            self.end(summary, loop, "failed", str(err), quiet=True)
            raise err from None
        return summary

    def log_header(self, regime: Any, summary: dict[str, Any], steps: int) -> None:
        """The lines that follow the run folder's at the top of train.log and the console: where and how the run
        trains, which model, on what data."""
        tcfg = self.cfg.trainer
        gpu = f" ({torch.cuda.get_device_name(self.device)})" if self.device.type == "cuda" else ""
        processes = f" x {summary['world_size']} processes" if summary["world_size"] > 1 else ""
        log.info("device %s%s%s, precision %s", self.device, gpu, processes, tcfg.precision)
        log.info("model %s: %s parameters (%s trainable)", OmegaConf.to_object(self.cfg.model).title(),
                 f"{summary['params']:,}", f"{summary['trainable_params']:,}")
        sizes = ", ".join(f"{name} {split['images']:,}" for name, split in regime.splits.items())
        log.info("data %s: %d classes; images: %s", self.cfg.dataset.name, len(regime.class_names), sizes)
        accumulate = f" x {tcfg.accumulate} accumulated" if tcfg.accumulate > 1 else ""
        log.info("regime %s: %d epochs of %d steps, batch %d%s", self.cfg.regime.name, tcfg.epochs, steps,
                 tcfg.batch_size, accumulate)
        if tcfg.monitor != "val_acc1":
            log.info("best.pt and early stopping by the %s (trainer.monitor=%s)", MONITOR_NAMES[tcfg.monitor],
                     tcfg.monitor)
        val = regime.splits.get("val")
        unseen = [name for name, count in (val or {}).get("per_class", {}).items() if count == 0]
        if unseen:  # a few labels per class leave a validation split of a few images (labeled_per_class=4)
            log.warning("the validation split (%d images) has none of %d of the %d classes (%s): best.pt and early "
                        "stopping are chosen on it; dataset.val_fraction=0 scores the last epoch instead",
                        val["images"], len(unseen), len(regime.class_names), ", ".join(unseen))

    def end(self, summary: dict[str, Any], loop: "_Loop", status: str, reason: str | None, quiet: bool = False) -> None:
        """The run-end event with the final figures. `quiet`: the run is already ending for another reason;
        the record is written as far as the disk allows, and a second Ctrl-C here ends at once (every write
        is atomic, so it leaves the previous good version)."""
        summary.update(status=status, reason=reason, epochs_run=len(loop.rows), best_epoch=loop.best_epoch,
                       best_val_acc1=loop.best_val_acc1, monitor=self.cfg.trainer.monitor,
                       best_val_balanced_acc1=loop.best_val_balanced_acc1, best_val_macro_f1=loop.best_val_macro_f1,
                       best_val_loss=None if loop.best_val_loss is None else round(loop.best_val_loss, 4),
                       final_val_acc1=loop.rows[-1].get("val_acc1") if loop.rows else None,
                       final_train_loss=round(loop.rows[-1]["train_loss"], 4) if loop.rows else None,
                       stopped_early=loop.stopped_early, wall_seconds=round(loop.wall_seconds(), 2))
        if reason is not None:
            (log.error if status == "failed" else log.warning)(reason)
        with contextlib.suppress(Interrupted) if quiet else contextlib.nullcontext():
            self.events.emit("on_run_end", summary, loop.rows, quiet=(StorageError, Interrupted) if quiet else ())

    def record(self, params: int, facts: dict[str, Any], body: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """The life cycle of a run that takes no training steps of its own (a k-NN vote; rounds of runs
        nested in this one): the run-start event, `body` filling the summary's results, the run-end event."""
        started = time.time()
        summary = self.start_summary(params, 0, facts)
        self.events.emit("on_run_start", summary)
        try:
            body(summary)
        except Interrupted as err:
            reason = f"interrupted by {err}; {resume_hint(self.run.path)}"
            summary.update(status="interrupted", reason=reason, wall_seconds=round(time.time() - started, 2))
            with contextlib.suppress(Interrupted):
                self.events.emit("on_run_end", summary, [], quiet=(StorageError, Interrupted))
            raise SystemExit(130) from None
        summary.update(status="completed", reason=None, wall_seconds=round(time.time() - started, 2))
        self.events.emit("on_run_end", summary, [])
        return summary


def with_class_scores(result: dict[str, Any]) -> dict[str, Any]:
    """An evaluation's result with its balanced top-1 and macro-F1 (percent), from its confusion counts."""
    return {**result, "balanced_acc1": balanced_acc1(result["confusion"]), "macro_f1": macro_f1(result["confusion"])}


def regime_facts(regime: Any) -> dict[str, Any]:
    """What summary.json records of a prepared regime: classes, splits, its result columns and extras."""
    return {"class_names": regime.class_names, "splits": regime.splits, "result_columns": list(regime.result_columns),
            **regime.summary_extra}


class _Loop:
    """The state of one fit(): epochs, steps, checkpoints, best weights, early stopping."""

    def __init__(self, trainer: Trainer, regime: Any, trained: dict[str, nn.Module], steps: int, started: float):
        self.trainer, self.regime, self.cfg, self.run = trainer, regime, trainer.cfg, trainer.run
        self.device, self.dtype, self.events = trainer.device, trainer.dtype, trainer.events
        tcfg = self.cfg.trainer
        self.steps = steps
        # Optimiser steps (schedule steps, EMA updates) an epoch: one per trainer.accumulate batches, the last group
        # possibly shorter.
        self.updates_per_epoch = -(-steps // tcfg.accumulate)
        self.trained = trained
        self.step_module = StepModule(regime, trained)
        self.train_step = self._distributed(self.step_module)
        self.optimizer = build_optimizer(regime.param_groups(), self.cfg.optim, self.device)
        self.scheduler = build_scheduler(self.optimizer, self.cfg.sched, self.cfg.optim.lr, tcfg.epochs,
                                         self.updates_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.ema = build_ema(regime.model, tcfg.ema_decay) if tcfg.ema_decay else None
        self.rows: list[dict[str, Any]] = []
        self.epoch = 0
        # After the epochs: "testing" the best weights, then "finishing" (the run-end event's files).
        self.stage = "training"
        self.best_epoch: int | None = None
        self.best_val_acc1: float | None = None
        self.best_val_loss: float | None = None
        self.best_val_balanced_acc1: float | None = None
        self.best_val_macro_f1: float | None = None
        # Early stopping: the best value of trainer.monitor that counted as a gain, and the epochs since.
        self.gain: float | None = None
        self.stale_epochs = 0
        self.stopped_early = False
        # Time spent before a resume, so wall_seconds counts the whole run.
        self.earlier_seconds = 0.0
        self.started = started

    def _distributed(self, step_module: StepModule) -> nn.Module:
        """What steps call: under torchrun, the step module wrapped in DistributedDataParallel."""
        if not distributed.active():
            return step_module
        if self.cfg.trainer.sync_bn:
            step_module = nn.SyncBatchNorm.convert_sync_batchnorm(step_module)
        # A regime may hold parameters out of a step (a backbone frozen for some epochs, a module whose
        # loss term is switched off): DDP must then look for parameters without gradients.
        return nn.parallel.DistributedDataParallel(
            step_module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=self.regime.unused_parameters)

    def wall_seconds(self) -> float:
        return self.earlier_seconds + time.time() - self.started

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated, kept as best and tested: EMA when enabled."""
        return self.ema.module if self.ema is not None else self.regime.model

    @property
    def epoch_done(self) -> int:
        return len(self.rows)

    def run_epochs(self) -> None:
        tcfg = self.cfg.trainer
        for self.epoch in range(self.epoch, tcfg.epochs):
            if self.stopped_early:
                break
            started = time.perf_counter()
            train = self.train_one_epoch()
            val = (with_class_scores(evaluate(self.eval_model, self.regime.val_loader, self.regime.normalize,
                                              self.dtype, progress="validation" if tcfg.progress else None))
                   if self.regime.val_loader is not None else None)
            self.check_finite_epoch(val)
            row = {"epoch": self.epoch + 1, **train, "val_loss": val and val["loss"], "val_acc1": val and val["acc1"],
                   "val_acc5": val and val["acc5"], "val_balanced_acc1": val and val["balanced_acc1"],
                   "val_macro_f1": val and val["macro_f1"], "epoch_seconds": time.perf_counter() - started}
            self.rows.append(row)
            if self.improves(val, tcfg.monitor):
                self.best_epoch = self.epoch + 1
                self.best_val_acc1 = None if val is None else round(val["acc1"], 2)
                self.best_val_loss = None if val is None else val["loss"]
                self.best_val_balanced_acc1 = None if val is None else round(val["balanced_acc1"], 2)
                self.best_val_macro_f1 = None if val is None else round(val["macro_f1"], 2)
                self.save("best.pt", self.best_state())
            self.count_towards_early_stop(val)
            # Checkpoints before metrics.csv: an epoch listed there is always in last.pt too.
            self.save_last()
            self.end_of_epoch_event(row)

    def end_of_epoch_event(self, row: dict[str, Any]) -> None:
        """The epoch-end event; a callback's EndRun (raised on rank 0, where callbacks write) ends every process."""
        ended = None
        try:
            self.events.emit("on_epoch_end", row, self.rows)
        except EndRun as err:
            ended = err
        if distributed.active():
            flag = torch.tensor(int(ended is not None), device=self.device)
            distributed.max_over_ranks(flag)
            if flag.item() and ended is None:
                ended = EndRun("stopped", "rank 0 ended the run")
        if ended is not None:
            raise ended

    def improves(self, val: dict[str, float] | None, monitor: str = "val_acc1") -> bool:
        """Lower validation loss (monitor val_loss), or a higher validation score (as reported, to 2 decimals: top-1,
        balanced top-1, macro-F1); on a tie, lower validation loss.

        Small validation sets tie often (20 images move in steps of 5%); the loss then tells
        the better-fitted epoch instead of always keeping the earliest.
        """
        if val is None or self.best_val_acc1 is None:
            return True
        if monitor == "val_loss":
            return val["loss"] < self.best_val_loss
        score, best = round(val[monitor.removeprefix("val_")], 2), getattr(self, f"best_{monitor}")
        return score > best or (score == best and val["loss"] < self.best_val_loss)

    def count_towards_early_stop(self, val: dict[str, float] | None) -> None:
        """trainer.early_stop_patience epochs without a gain of early_stop_min_delta in trainer.monitor end the run."""
        tcfg = self.cfg.trainer
        if val is None or tcfg.early_stop_patience == 0:
            return
        # Strictly more than min_delta, as Lightning's EarlyStopping: a plateau (an equal score) is no gain.
        value, delta = val[tcfg.monitor.removeprefix("val_")], tcfg.early_stop_min_delta
        if self.gain is None or (value < self.gain - delta if tcfg.monitor == "val_loss" else value > self.gain + delta):
            self.gain, self.stale_epochs = value, 0
        else:
            self.stale_epochs += 1
        if self.stale_epochs >= tcfg.early_stop_patience and self.epoch + 1 < tcfg.epochs:
            self.stopped_early = True
            log.info("early stop after epoch %d: no %s gain of %s in %d epochs", self.epoch + 1,
                     MONITOR_NAMES[tcfg.monitor], tcfg.early_stop_min_delta, tcfg.early_stop_patience)

    def train_one_epoch(self) -> dict[str, float]:
        tcfg = self.cfg.trainer
        self.step_module.train()
        self.regime.epoch_start(self.epoch)
        batches = {name: cycled(loader, self.epoch) for name, loader in self.regime.train_loaders.items()}
        sums: dict[str, torch.Tensor] = {}
        loss_sum = torch.zeros((), device=self.device)
        seen = 0
        started = time.perf_counter()
        lr = self.optimizer.param_groups[-1]["lr"]
        bar = tqdm(range(self.steps), desc=f"epoch {self.epoch + 1}/{tcfg.epochs}", leave=False,
                   disable=not tcfg.progress or not parallel.is_main(), mininterval=1.0, dynamic_ncols=True)
        # Step losses stay on the device; every log_every_n_steps steps they are checked and summed at once.
        losses: list[torch.Tensor] = []
        sizes: list[int] = []
        first_step = self.epoch * self.steps + 1
        for step in bar:
            batch = {name: to_device(next(source), self.device) for name, source in batches.items()}
            if self.epoch == 0 and step == 0:
                images = next(iter(batch.values()))[0]
                if images.ndim == 4:  # images, not cached features
                    self.events.emit("on_train_images", images)
            loss, step_sums = self.step(batch, step)
            for key, value in step_sums.items():
                sums[key] = sums[key] + value.detach() if key in sums else value.detach().clone()
            losses.append(loss.detach())
            sizes.append(batch_size_of(next(iter(batch.values()))))
            if len(losses) == tcfg.log_every_n_steps or step + 1 == self.steps:
                loss_sum += self.checked_loss_sum(losses, sizes, first_step + step + 1 - len(losses))
                seen += sum(sizes)
                losses, sizes = [], []
        seen_total = torch.tensor(seen, device=self.device)
        names = sorted(sums)  # every process reduces the same tensors in the same order
        distributed.sum_over_ranks(loss_sum, seen_total, *(sums[name] for name in names))
        seconds = time.perf_counter() - started
        return {"lr": lr, "train_loss": loss_sum.item() / max(seen_total.item(), 1),
                **self.regime.epoch_metrics({name: sums[name].item() for name in names}),
                "train_images_per_second": seen_total.item() / max(seconds, 1e-9)}

    def step(self, batch: dict[str, Any], step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One batch through the step module; the optimiser steps every trainer.accumulate batches (and at the
        epoch's end), with gradients reduced over the processes only then."""
        accumulate = self.cfg.trainer.accumulate
        group_start = step - step % accumulate
        group_size = min(accumulate, self.steps - group_start)
        last_in_group = step + 1 == group_start + group_size
        if step == group_start:
            self.optimizer.zero_grad(set_to_none=True)
        holding = (self.train_step.no_sync() if isinstance(self.train_step, nn.parallel.DistributedDataParallel)
                   and not last_in_group else contextlib.nullcontext())
        with holding:
            with autocast(self.device, self.dtype):
                loss, sums = self.train_step(batch, self.ema)
            self.scaler.scale(loss if group_size == 1 else loss / group_size).backward()
        if last_in_group:
            self.optimizer_step()
        return loss, sums

    def optimizer_step(self) -> None:
        grad_clip = self.cfg.trainer.grad_clip
        if grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.step_module.parameters(), grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.regime.model)

    def checked_loss_sum(self, losses: list[torch.Tensor], sizes: list[int], first_step: int) -> torch.Tensor:
        """The image-weighted sum of some steps' losses; a non-finite one stops the run (one host sync).
        The steps' mean loss and the learning rate go to the loggers."""
        stacked = torch.stack(losses)
        finite = torch.isfinite(stacked)
        any_bad = (~finite).any().to(torch.int32)
        distributed.max_over_ranks(any_bad)  # every process stops at the same check
        if any_bad.item():
            index = int((~finite).nonzero()[0]) if not finite.all() else 0
            raise Diverged(f"training loss became {stacked[index].item()} at step {first_step + index} "
                           f"(epoch {self.epoch + 1}); checkpoints/last.pt keeps epoch {self.epoch_done}; "
                           f"{self.divergence_advice()}")
        weighted = (stacked * torch.tensor(sizes, device=stacked.device, dtype=stacked.dtype)).sum()
        self.events.emit("on_steps", first_step + len(losses) - 1,
                         {"lr": self.optimizer.param_groups[-1]["lr"], "train_loss": weighted.item() / sum(sizes)})
        return weighted

    def check_finite_epoch(self, val: dict[str, float] | None) -> None:
        """The epoch's end, before anything of it is kept: a non-finite validation loss stops the run, as a
        non-finite training loss does (that one is read before each update, so an update that breaks the
        weights at an epoch's last step shows only here). Without a validation split, the evaluated weights
        themselves are checked, since every such epoch becomes best.pt."""
        kept = f"checkpoints/last.pt keeps epoch {self.epoch_done}; {self.divergence_advice()}"
        if val is not None and not math.isfinite(val["loss"]):
            raise Diverged(f"validation loss became {val['loss']} in epoch {self.epoch + 1}; {kept}")
        if val is None and not all(torch.isfinite(t).all() for t in self.eval_model.state_dict().values()
                                   if t.is_floating_point()):
            raise Diverged(f"the weights became non-finite in epoch {self.epoch + 1}; {kept}")

    def check_finite_test(self, test: dict[str, float]) -> None:
        """Finite weights can still overflow on the test images (no validation split saw them): a non-finite
        test loss fails the run too."""
        if not math.isfinite(test["loss"]):
            raise Diverged(f"test loss became {test['loss']} with the weights of epoch {self.best_epoch}; "
                           f"{self.divergence_advice()}")

    def divergence_advice(self) -> str:
        # Normalising by a standard deviation near 0 makes inputs of size 1/std: no learning rate copes.
        std = getattr(self.regime.normalize, "std", None)
        if std is not None and min(std) < TINY_STD:
            return (f"dataset.std={list(std)} has a value near 0, which makes the normalised inputs huge; "
                    "set dataset.mean and dataset.std to the data's own statistics")
        return "lower optim.lr or set trainer.grad_clip"

    def save(self, name: str, state: dict[str, Any]) -> None:
        self.run.save_checkpoint(name, state)
        self.events.emit("on_checkpoint", name, self.run.checkpoints / name)

    def best_state(self) -> dict[str, Any]:
        return {"model": self.regime.model.state_dict(),
                "ema": None if self.ema is None else self.ema.module.state_dict(),
                # How many updates the EMA has averaged: its first copies the weights, the later ones average.
                "ema_updates": None if self.ema is None else int(self.ema.n_averaged),
                "extra": {name: module.state_dict() for name, module in self.trained.items() if name != "model"},
                "epoch": self.epoch + 1, "val_acc1": self.best_val_acc1,
                "class_names": self.regime.class_names, "image_size": self.regime.image_size,
                "config": OmegaConf.to_container(self.cfg)}

    def load_weights(self, state: dict[str, Any]) -> None:
        """The trained modules and the EMA from a best_state() or save_last() checkpoint."""
        self.regime.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state["ema"])
            # Checkpoints from before cvrun recorded the count: an epoch's end follows at least one update.
            self.ema.n_averaged.fill_(state.get("ema_updates") or 1)
        for name, module in self.trained.items():
            if name != "model":
                module.load_state_dict(state["extra"][name])

    def save_last(self) -> None:
        """checkpoints/last.pt: everything an uninterrupted run would carry into the next epoch."""
        self.save("last.pt", {
            **self.best_state(), "epoch": self.epoch_done, "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "best_epoch": self.best_epoch, "best_val_acc1": self.best_val_acc1,
            "best_val_loss": self.best_val_loss, "best_val_balanced_acc1": self.best_val_balanced_acc1,
            "best_val_macro_f1": self.best_val_macro_f1, "metrics": self.rows, "splits": self.regime.splits,
            "early_stop": {"gain": self.gain, "stale_epochs": self.stale_epochs, "stopped": self.stopped_early},
            "wall_seconds": self.wall_seconds(), "rng": rng_states()})

    def resume_from(self, state: dict[str, Any]) -> None:
        """Carry on from last.pt: weights, optimiser, schedule, scaler, EMA, metrics, early stopping, random states."""
        self.load_weights(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.rows = list(state["metrics"])
        self.epoch = self.epoch_done
        self.best_epoch, self.best_val_acc1 = state["best_epoch"], state["best_val_acc1"]
        self.best_val_loss = state["best_val_loss"]
        # Checkpoints from before trainer.monitor: the top-1 was the only monitor.
        self.best_val_balanced_acc1 = state.get("best_val_balanced_acc1")
        self.best_val_macro_f1 = state.get("best_val_macro_f1")
        early = state.get("early_stop", {})
        self.gain, self.stale_epochs = early.get("gain", early.get("gain_acc1")), early.get("stale_epochs", 0)
        self.stopped_early = early.get("stopped", False)
        self.earlier_seconds = state["wall_seconds"]
        restore_rng_states(state["rng"])
        log.info("resumed from %s after epoch %d of %d", self.run.checkpoints / "last.pt", self.epoch,
                 self.cfg.trainer.epochs)

    def test_best(self) -> dict[str, float]:
        """Load best.pt into the evaluated weights and score them on the test split."""
        distributed.barrier()  # rank 0 has written it
        self.load_weights(load_checkpoint(self.run.checkpoints / "best.pt"))
        return self.regime.test(self.eval_model)

    def interrupt_reason(self, signal_name: str) -> str:
        """Why the run stopped and how to carry it on, in one line."""
        epochs = self.cfg.trainer.epochs
        trained = f"(all {epochs} epochs trained)"
        where, then = {"training": (f"after epoch {self.epoch_done} of {epochs}", ""),
                       "testing": (f"during the final test evaluation {trained}", " (it runs the test alone)"),
                       "finishing": (f"while writing the final files {trained}", " (it runs the test alone)")}[self.stage]
        return f"interrupted by {signal_name} {where}; checkpoints/last.pt holds it: {resume_hint(self.run.path)}{then}"
