"""The one training loop every regime goes through.

A regime prepares a TrainingJob (model, loaders, loss, parameter groups) and
calls Trainer.fit. The loop keeps per-step work on the device: metrics are
accumulated as tensors and read once per epoch, so there is no host-device
synchronisation per step.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm import tqdm

from cvrun.engine import distributed
from cvrun.data.splits import split_changes
from cvrun.engine.checkpoint import load_checkpoint
from cvrun.engine.evaluate import Normalize, evaluate
from cvrun.engine.optim import build_optimizer, build_scheduler
from cvrun.engine.rundir import RunFolder, resume_hint, versions
from cvrun.engine.runtime import Interrupted, autocast, autocast_dtype, select_device
from cvrun.errors import ResumeRefused, UserError
from cvrun.io import StorageError
from cvrun.models.registry import Classifier, count_parameters
from cvrun.report.curves import plot_curves

log = logging.getLogger("cvrun")

# Steps between checks of the training loss: one host-device sync per interval, not per step.
CHECK_EVERY = 50
# A dataset.std below this (on the 0-1 scale; real images have about 0.2-0.3) blows the inputs up.
TINY_STD = 1e-3

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Diverged(Exception):
    """The training loss became non-finite."""


@dataclass
class TrainingJob:
    """What a regime hands the trainer."""

    model: Classifier
    train_loader: DataLoader
    val_loader: DataLoader | None
    test_loader: DataLoader
    class_names: list[str]
    image_size: int
    mean: list[float]
    std: list[float]
    # loss(logits, targets); targets are class indices or per-class probabilities.
    loss_fn: LossFn | None = None
    # Optimiser parameter groups; by default every trainable parameter at optim.lr.
    param_groups: list[dict[str, Any]] | None = None
    # (images, labels) -> (images, soft targets) on each normalised training batch: CutMix, MixUp.
    batch_mixer: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None
    # Loader batch -> model input on the device; by default uint8 images normalised with mean and std.
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None
    # Called with the 0-based epoch before it trains (finetune: unfreeze the backbone).
    epoch_start: Callable[[int], None] | None = None
    # Modules trained beside the model (LwF's old output layer): checkpointed with it and restored with the best.
    extra_modules: dict[str, nn.Module] = field(default_factory=dict)
    summary_extra: dict[str, Any] = field(default_factory=dict)
    # What the run trains, validates and tests on (DataSplits.record): summary.json and last.pt keep it,
    # and a resume refuses other data.
    splits: dict[str, Any] = field(default_factory=dict)


def hard_labels(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class indices of a batch of targets: labels, or rows whose first num_classes columns are a distribution."""
    return targets[:, :num_classes].argmax(dim=1) if targets.ndim == 2 else targets


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


def check_trainable(job: TrainingJob, batch_size: int) -> None:
    """A run that would take no optimisation step, or steps batch norm cannot take, is refused before it starts."""
    loader = job.train_loader
    images = len(loader.dataset)
    if len(loader) == 0:
        raise UserError(f"the training set gives no optimisation step: {images} image(s) at trainer.batch_size="
                        f"{batch_size} (a last batch of a single image is left out: batch norm cannot train on it); "
                        "train on more images (dataset.subset, dataset.labeled_per_class)")
    # Cached features feed the head alone, which holds no batch norm.
    with_batch_norm = not job.model.takes_features and any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in job.model.train().modules())
    if loader.batch_size == 1 and with_batch_norm:
        raise UserError(f"trainer.batch_size={batch_size} gives steps of a single image, on which batch norm "
                        "cannot train; use trainer.batch_size=2 or more")


class Trainer:
    def __init__(self, cfg: Any, run: RunFolder):
        self.cfg = cfg
        self.run = run
        self.device = select_device(cfg.trainer.device)
        self.dtype = autocast_dtype(cfg.trainer.precision, self.device)

    def fit(self, job: TrainingJob) -> dict[str, Any]:
        """Train, validate every epoch, checkpoint, test the best weights; return summary.json.

        Every ending is recorded in summary.json: completed, interrupted (SIGINT/SIGTERM, exit 130),
        failed (a diverged loss, exit 1; a full or read-only disk, StorageError).
        """
        tcfg = self.cfg.trainer
        started = time.time()
        check_trainable(job, tcfg.batch_size)
        last = self.run.checkpoints / "last.pt"
        resumed = load_checkpoint(last) if tcfg.resume is not None and last.is_file() else None
        if resumed is not None:
            check_same_splits(resumed.get("splits"), job.splits, self.run.path)
        model = place_model(job.model, tcfg, self.device)
        train_model = self._distributed(model, job)
        # Modules trained beside the model (LwF's old output layer) count as the run's parameters too.
        counts = [count_parameters(m) for m in (model, *job.extra_modules.values())]
        params, trainable = sum(c[0] for c in counts), sum(c[1] for c in counts)
        summary = self.run.update_summary(
            status="running", reason=None, seed=tcfg.seed, params=params, trainable_params=trainable,
            world_size=distributed.world_size(), device=str(self.device), versions=versions(),
            class_names=job.class_names, splits=job.splits, **job.summary_extra)
        normalize = job.prepare or Normalize(job.mean, job.std, self.device, tcfg.channels_last)
        for module in job.extra_modules.values():
            module.to(self.device)
        groups = job.param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
        optimizer = build_optimizer(groups, self.cfg.optim, self.device)
        scheduler = build_scheduler(optimizer, self.cfg.sched, self.cfg.optim.lr, tcfg.epochs, len(job.train_loader))
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(tcfg.ema_decay), use_buffers=True)
               if tcfg.ema_decay else None)
        loss_fn = job.loss_fn or (lambda logits, targets: F.cross_entropy(
            logits, targets, label_smoothing=tcfg.label_smoothing))
        loop = _Loop(self, model, train_model, ema, optimizer, scheduler, scaler, loss_fn, normalize, job, started)
        try:
            if resumed is not None:
                loop.resume_from(resumed)
            else:
                loop.save_last()  # an interrupt in the first epoch leaves a last.pt to carry on from
            loop.run_epochs()
            loop.stage = "testing"
            test = loop.test_best()
            summary.update(test_acc1=round(test["acc1"], 2), test_acc5=round(test["acc5"], 2),
                           test_loss=round(test["loss"], 4), test_samples=test["samples"])
            loop.stage = "finishing"
            self._finish(summary, loop, "completed", None)
        except Interrupted as err:
            reason = loop.interrupt_reason(str(err))
            self._record_end(summary, loop, "interrupted", reason)
            log.warning(reason)
            raise SystemExit(130) from None
        except Diverged as err:
            self._record_end(summary, loop, "failed", str(err))
            log.error(str(err))
            raise SystemExit(1) from None
        except StorageError as err:
            if loop.epoch_done == tcfg.epochs:  # the weights exist: say where, and how to score them
                tested = f"test top-1 {summary['test_acc1']}%, " if "test_acc1" in summary else ""
                err = err.with_advice(f"training finished ({tested}best weights in {self.run.checkpoints / 'best.pt'}); "
                                      f"once there is room, `cvrun eval {self.run.path}` gives the test score")
            self._record_end(summary, loop, "failed", str(err))
            raise err from None
        log.info("test: top-1 %.2f%%  top-5 %.2f%%  (%d images, best epoch %s)",
                 test["acc1"], test["acc5"], test["samples"], summary["best_epoch"])
        return summary

    def _finish(self, summary: dict[str, Any], loop: "_Loop", status: str, reason: str | None) -> None:
        """curves.png, then summary.json with the ending: a run reads `completed` only once every file is written."""
        summary.update(status=status, reason=reason, epochs_run=len(loop.rows),
                       best_epoch=loop.best_epoch, best_val_acc1=loop.best_val_acc1,
                       final_val_acc1=loop.rows[-1].get("val_acc1") if loop.rows else None,
                       final_train_loss=round(loop.rows[-1]["train_loss"], 4) if loop.rows else None,
                       wall_seconds=round(loop.wall_seconds(), 2))
        if loop.rows and self.run.writes:
            plot_curves(loop.rows, self.run.path / "curves.png")
        self.run.write_summary(summary)

    def _record_end(self, summary: dict[str, Any], loop: "_Loop", status: str, reason: str) -> None:
        """_finish as far as the disk allows; never raises. A second Ctrl-C here ends the process at once:
        every write is atomic, so it leaves the previous good version behind."""
        try:
            self._finish(summary, loop, status, reason)
        except StorageError:  # curves.png could not be written: the status still can be
            with contextlib.suppress(StorageError, Interrupted):
                self.run.write_summary(summary)
        except Interrupted:
            pass

    def _distributed(self, model: Classifier, job: TrainingJob) -> nn.Module:
        """The module training steps call: under torchrun, model wrapped in DistributedDataParallel."""
        if not distributed.active():
            return model
        if self.cfg.trainer.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        # An epoch hook may freeze parameters for a while (finetune's freeze_epochs); DDP must then
        # look for parameters without gradients.
        return nn.parallel.DistributedDataParallel(
            model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=job.epoch_start is not None)


class _Loop:
    """The state of one fit(): epochs, checkpoints, best weights."""

    def __init__(self, trainer: Trainer, model, train_model, ema, optimizer, scheduler, scaler, loss_fn, normalize,
                 job, started: float):
        self.trainer, self.cfg, self.run = trainer, trainer.cfg, trainer.run
        self.device, self.dtype = trainer.device, trainer.dtype
        # model: the Classifier (checkpoints, evaluation, EMA); train_model: what steps call (DDP under torchrun).
        self.train_model = train_model
        self.model, self.ema, self.optimizer, self.scheduler, self.scaler = model, ema, optimizer, scheduler, scaler
        self.loss_fn, self.normalize, self.job = loss_fn, normalize, job
        self.rows: list[dict[str, Any]] = []
        self.epoch = 0
        # After the epochs: "testing" the best weights, then "finishing" (curves.png, summary.json).
        self.stage = "training"
        self.best_epoch: int | None = None
        self.best_val_acc1: float | None = None
        self.best_val_loss: float | None = None
        # Time spent before a resume, so wall_seconds counts the whole run.
        self.earlier_seconds = 0.0
        self.started = started

    def wall_seconds(self) -> float:
        return self.earlier_seconds + time.time() - self.started

    @property
    def eval_model(self):
        """The weights that are validated, kept as best and tested: EMA when enabled."""
        return self.ema.module if self.ema is not None else self.model

    def run_epochs(self) -> None:
        epochs = self.cfg.trainer.epochs
        for self.epoch in range(self.epoch, epochs):
            started = time.perf_counter()
            train = self.train_one_epoch()
            val = (evaluate(self.eval_model, self.job.val_loader, self.normalize, self.dtype)
                   if self.job.val_loader is not None else None)
            row = {"epoch": self.epoch + 1, "lr": train["lr"], "train_loss": train["loss"],
                   "train_acc1": train["acc1"],
                   "val_loss": val and val["loss"], "val_acc1": val and val["acc1"], "val_acc5": val and val["acc5"],
                   "epoch_seconds": time.perf_counter() - started,
                   "train_images_per_second": train["images_per_second"]}
            self.rows.append(row)
            improved = self.improves(val)
            if improved:
                self.best_epoch = self.epoch + 1
                self.best_val_acc1 = None if val is None else round(val["acc1"], 2)
                self.best_val_loss = None if val is None else val["loss"]
                self.run.save_checkpoint("best.pt", self.best_state())
            # Checkpoints before metrics.csv: an epoch listed there is always in last.pt too.
            self.save_last()
            self.run.write_metrics(self.rows)
            val_text = f"val loss {val['loss']:.4f} acc1 {val['acc1']:.2f}%" if val else "no validation split"
            log.info("epoch %d/%d  train loss %.4f acc1 %.2f%%  %s  (%.1fs, %.0f img/s)%s", self.epoch + 1, epochs,
                     train["loss"], train["acc1"], val_text, row["epoch_seconds"], train["images_per_second"],
                     "  *best*" if improved else "")

    def improves(self, val: dict[str, float] | None) -> bool:
        """Higher validation top-1 (as reported, to 2 decimals); on a tie, lower validation loss.

        Small validation sets tie often (20 images move in steps of 5%); the loss then tells
        the better-fitted epoch instead of always keeping the earliest.
        """
        if val is None or self.best_val_acc1 is None:
            return True
        acc1 = round(val["acc1"], 2)
        return acc1 > self.best_val_acc1 or (acc1 == self.best_val_acc1 and val["loss"] < self.best_val_loss)

    def train_one_epoch(self) -> dict[str, float]:
        tcfg = self.cfg.trainer
        loader = self.job.train_loader
        loader.sampler.set_epoch(self.epoch)
        self.train_model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        labeled = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        started = time.perf_counter()
        lr = self.optimizer.param_groups[-1]["lr"]
        bar = tqdm(loader, desc=f"epoch {self.epoch + 1}/{tcfg.epochs}", leave=False,
                   disable=not tcfg.progress or not distributed.is_main(), mininterval=1.0, dynamic_ncols=True)
        if self.job.epoch_start is not None:
            self.job.epoch_start(self.epoch)
        num_classes = len(self.job.class_names)
        # Step losses stay on the device; every CHECK_EVERY steps they are checked and summed at once.
        losses: list[torch.Tensor] = []
        sizes: list[int] = []
        steps = len(loader)
        first_step = self.epoch * steps + 1
        for step_in_epoch, (images, targets) in enumerate(bar):
            images = self.normalize(images)
            targets = targets.to(self.device, non_blocking=True)
            if self.job.batch_mixer is not None:
                images, targets = self.job.batch_mixer(images, targets)
            with autocast(self.device, self.dtype):
                logits = self.train_model(images)
                loss = self.loss_fn(logits.float(), targets)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if tcfg.grad_clip:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), tcfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            losses.append(loss.detach())
            sizes.append(targets.shape[0])
            labels = hard_labels(targets, num_classes)
            # Train accuracy counts the images whose label training may see: a hidden label (-1) never
            # matches the argmax, and is not counted as labeled.
            correct += (logits.argmax(dim=1) == labels).sum()
            labeled += (labels >= 0).sum()
            if len(losses) == CHECK_EVERY or step_in_epoch + 1 == steps:
                loss_sum += self.checked_loss_sum(losses, sizes, first_step + step_in_epoch + 1 - len(losses))
                seen += sum(sizes)
                losses, sizes = [], []
        seen_total = torch.tensor(seen, device=self.device)
        distributed.sum_over_ranks(loss_sum, correct, labeled, seen_total)
        seconds = time.perf_counter() - started
        mean_loss = loss_sum.item() / max(seen_total.item(), 1)
        return {"loss": mean_loss, "acc1": 100.0 * correct.item() / max(labeled.item(), 1), "lr": lr,
                "images_per_second": seen_total.item() / max(seconds, 1e-9)}

    def checked_loss_sum(self, losses: list[torch.Tensor], sizes: list[int], first_step: int) -> torch.Tensor:
        """The image-weighted sum of some steps' losses; a non-finite one stops the run (one host sync)."""
        stacked = torch.stack(losses)
        finite = torch.isfinite(stacked)
        any_bad = (~finite).any().to(torch.int32)
        distributed.max_over_ranks(any_bad)  # every process stops at the same check
        if any_bad.item():
            index = int((~finite).nonzero()[0]) if not finite.all() else 0
            raise Diverged(f"training loss became {stacked[index].item()} at step {first_step + index} "
                           f"(epoch {self.epoch + 1}); checkpoints/last.pt keeps epoch {self.epoch_done}; "
                           f"{self.divergence_advice()}")
        return (stacked * torch.tensor(sizes, device=stacked.device, dtype=stacked.dtype)).sum()

    def divergence_advice(self) -> str:
        # Normalising by a standard deviation near 0 makes inputs of size 1/std: no learning rate copes.
        if self.job.prepare is None and min(self.job.std) < TINY_STD:
            return (f"dataset.std={list(self.job.std)} has a value near 0, which makes the normalised inputs huge; "
                    "set dataset.mean and dataset.std to the data's own statistics")
        return "lower optim.lr or set trainer.grad_clip"

    def best_state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(),
                "ema": None if self.ema is None else self.ema.module.state_dict(),
                "extra": {name: module.state_dict() for name, module in self.job.extra_modules.items()},
                "epoch": self.epoch + 1, "val_acc1": self.best_val_acc1,
                "class_names": self.job.class_names, "image_size": self.job.image_size,
                "config": OmegaConf.to_container(self.cfg)}

    def load_weights(self, state: dict[str, Any]) -> None:
        """The model, EMA and extra modules from a best_state() or save_last() checkpoint."""
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state["ema"])
        for name, module in self.job.extra_modules.items():
            module.load_state_dict(state["extra"][name])

    def save_last(self) -> None:
        """checkpoints/last.pt: everything an uninterrupted run would carry into the next epoch."""
        self.run.save_checkpoint("last.pt", {
            **self.best_state(), "epoch": self.epoch_done, "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "best_epoch": self.best_epoch, "best_val_acc1": self.best_val_acc1,
            "best_val_loss": self.best_val_loss, "metrics": self.rows, "splits": self.job.splits,
            "wall_seconds": self.wall_seconds(), "rng": rng_states()})

    @property
    def epoch_done(self) -> int:
        return len(self.rows)

    def resume_from(self, state: dict[str, Any]) -> None:
        """Carry on from last.pt: weights, optimiser, schedule, scaler, EMA, metrics and random states."""
        self.load_weights(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.rows = list(state["metrics"])
        self.epoch = self.epoch_done
        self.best_epoch, self.best_val_acc1 = state["best_epoch"], state["best_val_acc1"]
        self.best_val_loss = state["best_val_loss"]
        self.earlier_seconds = state["wall_seconds"]
        restore_rng_states(state["rng"])
        log.info("resumed from %s after epoch %d of %d", self.run.checkpoints / "last.pt", self.epoch,
                 self.cfg.trainer.epochs)

    def test_best(self) -> dict[str, float]:
        """Load best.pt into the evaluated weights and score them on the test split."""
        distributed.barrier()  # rank 0 has written it
        self.load_weights(load_checkpoint(self.run.checkpoints / "best.pt"))
        return evaluate(self.eval_model, self.job.test_loader, self.normalize, self.dtype)

    def interrupt_reason(self, signal_name: str) -> str:
        """Why the run stopped and how to carry it on, in one line."""
        epochs = self.cfg.trainer.epochs
        trained = f"(all {epochs} epochs trained)"
        where, then = {"training": (f"after epoch {self.epoch_done} of {epochs}", ""),
                       "testing": (f"during the final test evaluation {trained}", " (it runs the test alone)"),
                       "finishing": (f"while writing the final files {trained}", " (it runs the test alone)")}[self.stage]
        return f"interrupted by {signal_name} {where}; checkpoints/last.pt holds it: {resume_hint(self.run.path)}{then}"
