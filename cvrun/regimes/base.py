"""The regime contract: what one training regime owns, with the standard behaviour as defaults.

A regime is one class in one module of cvrun/regimes/, registered by name, plus one YAML in
configs/regime/. It owns

- its config schema: a dataclass (`config`), stored in Hydra's ConfigStore for its option, so a key
  of another regime is refused at start naming the keys this one takes;
- what it needs and can do: the class attributes below (torchrun, resume, aug.mix, weights for
  `cvrun eval`, the result columns it adds to summary.json, summarize and sweep tables);
- the modules it trains (`trained`), the loaders it draws from (`train_loaders`);
- its training step: one batch from each loader in, the loss and the values to sum out.

The trainer (cvrun/engine/trainer.py) owns the rest. A minimal regime, label noise on a share of the
labels, is tests/regimes/test_contract.py; README's "Extending cvrun" walks through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from cvrun.augment import build_train_transform
from cvrun.augment.mixers import build_batch_mixer
from cvrun.config import OptionConfig
from cvrun.data.loaders import make_loader
from cvrun.data.samples import Samples
from cvrun.data.splits import DataSplits, build_splits
from cvrun.data.splits import check_before_run as check_data
from cvrun.engine.evaluate import Normalize, evaluate
from cvrun.engine.events import Callback
from cvrun.engine.losses import class_weights
from cvrun.engine.rundir import RunFolder
from cvrun.engine.runtime import autocast_dtype, select_device
from cvrun.engine.trainer import Trainer
from cvrun.errors import UserError
from cvrun.models import build_model
from cvrun.models.pretrained import check_pretrained, source_record
from cvrun.models.registry import Classifier
from cvrun.registry import Registry

REGIMES: Registry[type["Regime"]] = Registry("regime")
# The keys that name a run folder or checkpoint whose weights a run starts from or learns from.
SOURCE_KEYS = ("model.pretrained", "regime.teacher")


@dataclass
class RegimeConfig(OptionConfig):
    name: str = "scratch"


def labels_of(targets: Any) -> torch.Tensor:
    """The class labels of a batch's targets: the tensor itself, or the "label" of a dict of per-image extras."""
    return targets["label"] if isinstance(targets, dict) else targets


def accuracy_sums(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Correct top-1 predictions and the images counted: those whose label training may see (a hidden
    label, -1, never equals an argmax and is not counted)."""
    return {"correct": (logits.argmax(dim=1) == labels).sum(), "labeled": (labels >= 0).sum()}


class Regime:
    """The standard run (what regime=scratch is): augmented labeled images, plain validation and test
    images, cross-entropy, every parameter of the model at optim.lr. Subclasses override what differs."""

    config: ClassVar[type] = RegimeConfig
    # Why the regime cannot run under torchrun, cannot be resumed, or has no weights of its own for
    # `cvrun eval` ({run_dir}: the run folder); None where it can.
    not_distributed: ClassVar[str | None] = None
    not_resumable: ClassVar[str | None] = None
    no_weights: ClassVar[str | None] = None
    # Why trainer.class_weights cannot apply (the regime's loss is not the standard cross-entropy); None where it can.
    no_class_weights: ClassVar[str | None] = None
    mixes: ClassVar[bool] = True  # takes aug.mix (CutMix, MixUp)
    # summary.json keys the regime adds, shown by `cvrun summarize` and a sweep's summary.csv.
    result_columns: ClassVar[Sequence[str]] = ()
    # Parameters that a step may leave without gradients (frozen for some epochs): DDP must look for them.
    unused_parameters: bool = False

    def __init__(self, cfg: Any, run: RunFolder, callbacks: Sequence[Callback] = (),
                 callbacks_for: Callable[[Any, RunFolder], list[Callback]] | None = None):
        """callbacks: what receives the run's events; callbacks_for(cfg, folder): the same for a run nested
        in this one (noisy_student's rounds)."""
        self.cfg, self.folder = cfg, run
        self.callbacks_for = callbacks_for
        self.trainer = Trainer(cfg, run, callbacks)
        self.device, self.dtype = self.trainer.device, self.trainer.dtype
        self.summary_extra: dict[str, Any] = {}
        self.result_columns = list(type(self).result_columns)
        self.class_weights: torch.Tensor | None = None  # cross-entropy's, set with the loaders

    # --- the run -------------------------------------------------------------------------------------

    @classmethod
    def check_before_run(cls, cfg: Any) -> None:
        """What can be checked before the run folder is made, cheaply (directory listings, a source run's
        config.yaml and summary.json; no image decoded, no weights loaded): the device and precision, the
        dataset's extra folder, model.pretrained. A regime adds its own (its teacher)."""
        autocast_dtype(cfg.trainer.precision, select_device(cfg.trainer.device))
        check_data(cfg.dataset)
        check_pretrained(cfg.model)
        if cls.no_class_weights and cfg.trainer.class_weights not in (None, "none"):
            raise UserError(f"regime={cfg.regime.name} takes no trainer.class_weights: {cls.no_class_weights}; "
                            "leave trainer.class_weights=none")

    def start(self) -> dict:
        """Prepare, then train through the one trainer; summary.json's final keys."""
        self.refuse_mixing()
        self.record_sources()
        self.prepare()
        return self.trainer.fit(self)

    def record_sources(self) -> None:
        """The status and checkpoint hash of each run or checkpoint the run takes weights from, in summary.json
        (what `cvrun reproduce --check` compares); a warning line for a source whose run did not complete."""
        for key in SOURCE_KEYS:
            reference = OmegaConf.select(self.cfg, key, default=None)
            if reference not in (None, "imagenet"):
                self.summary_extra.update(source_record(reference, key))

    def prepare(self) -> None:
        self.data = build_splits(self.cfg.dataset)
        self.model = self.build_model()
        self.setup_loaders(self.data)

    def build_model(self, head_layers: int = 1) -> Classifier:
        return build_model(self.cfg.model, self.data.num_classes, self.data.image_size, head_layers)

    def setup_loaders(self, data: DataSplits, extras: dict[str, torch.Tensor] | None = None) -> None:
        """The standard loaders: `data.train` augmented (with per-image `extras`; in balanced draws with
        dataset.sampler=balanced), val and test plain; cross-entropy's class weights from `data.train`'s labels."""
        self.train_loaders = {"labeled": self.augmented_loader(data.train, extras,
                                                               balanced=self.cfg.dataset.sampler == "balanced")}
        weights = class_weights(self.cfg.trainer.class_weights, data.train.labels, data.class_names)
        self.class_weights = None if weights is None else weights.to(self.device)
        self.val_loader = self.plain_loader(data.val, shard=True) if data.val is not None and len(data.val) else None
        self.test_loader = self.plain_loader(data.test, shard=True)
        self.normalize = Normalize(list(self.cfg.dataset.mean), list(self.cfg.dataset.std), self.device,
                                   self.cfg.trainer.channels_last)
        self.mixer = build_batch_mixer(self.cfg.aug, data.num_classes)
        self.summary_extra.update(train_samples=len(data.train), val_samples=0 if data.val is None else len(data.val))

    def augmented_loader(self, samples: Samples, extras: dict[str, torch.Tensor] | None = None,
                         aug: Any = None, batch_size: int | None = None, balanced: bool = False) -> DataLoader:
        """Training images through an aug option (default the run's), this process's shard of each epoch.

        aug: a tuple of options gives each image in as many views (a tuple of batches), drawn in turn from the
        image's own generator.
        balanced: each class drawn equally often (dataset.sampler=balanced), rather than a shuffle.
        """
        tcfg = self.cfg.trainer
        build = lambda option: build_train_transform(option, self.data.image_size, self.cfg.dataset.mean)  # noqa: E731
        transform = tuple(map(build, aug)) if isinstance(aug, tuple) else build(aug or self.cfg.aug)
        return make_loader(samples, self.data.image_size, batch_size or tcfg.batch_size, train=True, seed=tcfg.seed,
                           transform=transform, num_workers=tcfg.num_workers, cuda=self.device.type == "cuda",
                           extras=extras, shard=True, balanced=balanced)

    def plain_loader(self, samples: Samples, shard: bool = False, image_size: int | None = None) -> DataLoader:
        """Un-augmented images in their stored order: evaluation, recorded outputs, cached features.

        shard: the trainer's validation and test sets, which each torchrun process scores a share of.
        image_size: another dataset's (LwF's old task), else the run's.
        """
        tcfg = self.cfg.trainer
        return make_loader(samples, image_size or self.data.image_size, tcfg.eval_batch_size or 2 * tcfg.batch_size,
                           train=False, seed=tcfg.seed, num_workers=tcfg.num_workers, cuda=self.device.type == "cuda",
                           shard=shard)

    # --- what the trainer reads ----------------------------------------------------------------------

    @property
    def trained(self) -> dict[str, nn.Module]:
        """Every module that trains by gradient; "model" is the one validated and tested."""
        return {"model": self.model}

    @property
    def class_names(self) -> list[str]:
        return self.data.class_names

    @property
    def image_size(self) -> int:
        return self.data.image_size

    @property
    def splits(self) -> dict[str, Any]:
        return self.data.record

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": [p for module in self.trained.values() for p in module.parameters() if p.requires_grad]}]

    def epoch_start(self, epoch: int) -> None:
        pass

    def training_step(self, trained: nn.ModuleDict, batches: dict[str, Any],
                      ema: nn.Module | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, targets = batches["labeled"]
        images = self.normalize(images)
        if self.mixer is not None:
            images, targets = self.mixer(images, targets)
        logits = trained["model"](images)
        labels = targets.argmax(dim=1) if targets.ndim == 2 else targets  # a mixed batch's soft targets
        return self.loss(logits.float(), targets), accuracy_sums(logits, labels)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, weight=self.class_weights,
                               label_smoothing=self.cfg.trainer.label_smoothing)

    def epoch_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """The epoch's summed step values as metrics.csv columns."""
        return {"train_acc1": 100.0 * sums["correct"] / max(sums["labeled"], 1)}

    def test(self, model: nn.Module) -> dict[str, float]:
        return evaluate(model, self.test_loader, self.normalize, self.dtype,
                        progress="test" if self.cfg.trainer.progress else None)

    def finished(self, summary: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The regime's own results, once the best weights are tested (added to summary.json)."""
        return {}

    # --- shared checks -------------------------------------------------------------------------------

    def refuse_mixing(self) -> None:
        if not self.mixes and self.cfg.aug.mix:
            raise UserError(f"regime={self.cfg.regime.name} cannot mix images (aug.mix={self.cfg.aug.mix}): its "
                            "targets belong to single images; use aug.mix=null")

    def require_pretrained(self, runs_only: bool = False) -> str:
        """model.pretrained of a transfer regime; a missing one is a user error."""
        source = self.cfg.model.pretrained
        kinds = "a run folder or checkpoint" if runs_only else "a run folder, a checkpoint or imagenet"
        if source is None or (runs_only and source == "imagenet"):
            got = "" if source is None else f", not {source}"
            raise UserError(f"regime={self.cfg.regime.name} needs model.pretrained ({kinds}) to start from{got}; "
                            f"e.g. model.pretrained=outputs/DATE/TIME_scratch_{self.cfg.model.name}")
        return source

