"""Structured-config schema: every key a YAML file or an override may set.

The YAML files in configs/ hold the values; these dataclasses hold the names
and types, so that a misspelt key or a wrong type fails before any data is
read. This module must not import torch: the CLI uses it to check overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, List, Optional

from cvrun.errors import UserError


@dataclass
class DatasetConfig:
    name: str = "cifar10"
    root: Optional[str] = None
    download: bool = True
    image_size: int = 32
    mean: List[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: List[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    subset: Optional[int] = None
    classes: Optional[List[str]] = None
    labeled_per_class: Optional[int] = None
    unlabeled_root: Optional[str] = None
    val_fraction: float = 0.1
    # Image-folder trees: the folders of the splits. null: test/ if present, else val/ (ImageNet's layout);
    # val/ beside test/ is the validation split (instead of holding out val_fraction).
    train_dir: str = "train"
    val_dir: Optional[str] = None
    test_dir: Optional[str] = None
    # Splits (subset, validation, labeled pool) use their own seed, so that
    # runs with different trainer.seed values see the same data.
    split_seed: int = 0
    # Decoded-image cache for datasets held as files: auto, none, ram, disk (cvrun/data/cache.py).
    cache: str = "auto"
    # Where dataset.cache=disk keeps its arrays; null: $CVRUN_CACHE_DIR or ~/.cache/cvrun.
    cache_dir: Optional[str] = None
    # shapes only: how many images to generate.
    train_size: int = 1200
    test_size: int = 500


@dataclass
class ModelConfig:
    name: str = "resnet18"
    pretrained: Optional[str] = None
    small_input: Any = "auto"
    dropout: float = 0.0
    drop_path: float = 0.0


# dataset.cache's modes (cvrun/data/cache.py says what each does).
CACHE_MODES = ("auto", "none", "ram", "disk")

# Names aug.mix and aug.policy accept (tests check them against cvrun.augment's registries).
MIX_NAMES = ("cutmix", "mixup")
AUTOAUGMENT_POLICY_NAMES = ("cifar10", "imagenet", "svhn")


@dataclass
class AugConfig:
    name: str = "basic"
    # base transform: pad-crop (small images) or random resized crop (large), then horizontal flip
    base: bool = True
    padding: int = 4
    hflip: float = 0.5
    # plain options
    shift: int = 32  # brightness: largest offset on the 0-255 scale
    vflip: float = 0.0  # flip: probability of a vertical flip
    degrees: float = 0.0  # rotate: largest angle
    rot90: float = 0.0  # rotate: probability of a 90/180/270 quarter turn
    scale: List[float] = field(default_factory=lambda: [0.25, 1.0])  # crop: share of the area kept
    shear: float = 0.3  # shear: largest shear factor per axis
    distortion: float = 0.1  # affine: largest corner move, as a share of the side
    perspective: float = 0.0  # affine: probability of a four-corner perspective warp instead
    erase: float = 0.0  # any option: probability of random erasing (cutout)
    # RandAugment / AutoAugment
    n: int = 2
    m: float = 9.0
    policy: str = "cifar10"
    # batch mixer on top of any option: null, cutmix or mixup
    mix: Optional[str] = None
    alpha: float = 1.0
    prob: float = 1.0


KNN_FEATURE_NAMES = ("backbone", "pixels")


@dataclass
class RegimeConfig:
    """Every regime's keys in one schema; each configs/regime/*.yaml sets the ones its regime reads."""

    name: str = "scratch"
    # feature_extract, finetune: how many of the model's last linear layers form the new head (1: the output layer)
    head_layers: int = 1
    # feature_extract: train the head on features computed once by the frozen backbone
    cache_features: bool = False
    # finetune, lwf: backbone learning rate = optim.lr x this; train the head alone for the first epochs
    backbone_lr_mult: float = 0.1
    freeze_epochs: int = 0
    # lwf: weight of the old-task distillation term and its softmax temperature
    lambda_old: float = 1.0
    temperature: float = 2.0
    # knn: neighbours that vote, what is compared (backbone features or raw pixels), similarity-weighted votes
    k: int = 20
    features: str = "backbone"
    weighted: bool = False
    # distill, pseudo_label, noisy_student: the teacher (a run folder or checkpoint)
    teacher: Optional[str] = None
    # distill: loss = (1 - alpha) x CE(hard label) + alpha x T^2 x KL(teacher || student); unlabeled pool: KD alone
    alpha: float = 0.9
    use_unlabeled: bool = True
    # pseudo_label, noisy_student: keep predictions with confidence >= threshold, as hard or soft labels
    threshold: float = 0.0
    soft: bool = False
    unlabeled_weight: float = 1.0
    balance: bool = False  # noisy_student: at most as many pseudo-labels per class as the rarest class has
    # noisy_student: rounds, the student model of each round, the augmentation option used as input noise
    rounds: int = 1
    students: List[str] = field(default_factory=list)
    noise_aug: str = "randaug"


@dataclass
class OptimConfig:
    name: str = "sgd"
    lr: float = 0.02
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class SchedConfig:
    name: str = "cosine"
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    milestones: List[float] = field(default_factory=lambda: [0.5, 0.75])
    gamma: float = 0.1
    pct_start: float = 0.25


@dataclass
class TrainerConfig:
    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: Optional[int] = None
    device: str = "auto"
    precision: Any = 32
    seed: int = 0
    deterministic: bool = False
    resume: Optional[str] = None
    progress: bool = True
    num_workers: Optional[int] = None
    label_smoothing: float = 0.0
    grad_clip: Optional[float] = None
    ema_decay: Optional[float] = None
    channels_last: bool = True
    # torch.compile the model (the first steps take the compile time).
    compile: bool = False
    # Under torchrun on GPUs: batch-norm statistics over the whole batch, not each process's share.
    sync_bn: bool = False


@dataclass
class TrainConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    regime: RegimeConfig = field(default_factory=RegimeConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


@dataclass
class EvalDataConfig:
    """Where the run's data is now, when it has moved since training (null: where config.yaml says)."""

    root: Optional[str] = None


@dataclass
class EvalConfig:
    run_dir: str = "???"
    split: str = "test"
    device: str = "auto"
    batch_size: Optional[int] = None
    progress: bool = True
    dataset: EvalDataConfig = field(default_factory=EvalDataConfig)


@dataclass
class InfoConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)


@dataclass
class PreviewConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    images: int = 8  # rows: training images, spread over the classes
    draws: int = 7  # augmented draws per image, after the original
    cell: int = 128  # smallest cell size in pixels; small images are enlarged (nearest) to at least this
    seed: int = 0


SCHEMAS = {"train": TrainConfig, "eval": EvalConfig, "info": InfoConfig, "preview": PreviewConfig}


def schema_keys(schema: type) -> dict[str, Any]:
    """Map every dotted key of a dataclass schema to its field type."""
    keys: dict[str, Any] = {}
    for f in fields(schema):
        default = f.default_factory() if callable(f.default_factory) else f.default
        if is_dataclass(default):
            for sub, kind in schema_keys(type(default)).items():
                keys[f"{f.name}.{sub}"] = kind
        else:
            keys[f.name] = f.type
    return keys


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as {"dotted.key": value}."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}{key}." if isinstance(value, dict) else f"{prefix}{key}"))
    return flat


def validate(cfg: Any, schema: type) -> Any:
    """Merge a composed config onto its schema; a bad key or type, or a value left unset, is a UserError."""
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        plain.pop("hydra", None)
        typed = OmegaConf.merge(OmegaConf.structured(schema), plain)
    except MissingMandatoryValue as err:
        key = getattr(err, "full_key", "") or "?"
        raise UserError(f"{key} must be set: add {key}=... to the command") from None
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", "") or "?"
        reason = str(getattr(err, "msg", err)).splitlines()[0]
        raise UserError(f"config key '{key}': {reason}") from None
    check_values(typed)
    return typed


def load_run_config(path: Any, schema: type | None = None) -> Any:
    """A run's saved config (config.yaml, or a checkpoint's), validated; a file that cannot be read or
    holds a bad value is a UserError naming the file."""
    from omegaconf import OmegaConf

    try:
        raw = OmegaConf.load(path) if not isinstance(path, dict) else OmegaConf.create(path)
    except Exception as err:  # noqa: BLE001 - a YAML or file error: the same user-facing mistake
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{path} cannot be read ({reason}); it is not a valid cvrun config.yaml") from None
    try:
        return validate(raw, schema or TrainConfig)
    except UserError as err:
        where = "the checkpoint's config" if isinstance(path, dict) else str(path)
        raise UserError(f"{where}: {err}") from None


def absolute_root(dataset: Any) -> None:
    """Make dataset.root absolute, so the config saved with a run finds the data from any folder."""
    from pathlib import Path

    if dataset.root is not None:
        dataset.root = str(Path(dataset.root).expanduser().absolute())


def absolute_paths(cfg: Any) -> None:
    """Every path of a train config made absolute, for the config saved with a run."""
    from pathlib import Path

    absolute_root(cfg.dataset)
    if cfg.dataset.cache_dir is not None:
        cfg.dataset.cache_dir = str(Path(cfg.dataset.cache_dir).expanduser().absolute())
    if cfg.dataset.unlabeled_root is not None:
        cfg.dataset.unlabeled_root = str(Path(cfg.dataset.unlabeled_root).expanduser().absolute())
    if cfg.model.pretrained not in (None, "imagenet"):
        cfg.model.pretrained = str(Path(cfg.model.pretrained).expanduser().absolute())
    if cfg.regime.teacher is not None:
        cfg.regime.teacher = str(Path(cfg.regime.teacher).expanduser().absolute())


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def check_values(cfg: Any) -> None:
    """Range checks that types alone cannot express."""
    from omegaconf import OmegaConf

    if "trainer" in cfg:
        t = cfg.trainer
        _require(t.epochs > 0, f"trainer.epochs must be a positive integer, got {t.epochs}")
        _require(t.batch_size > 0, f"trainer.batch_size must be a positive integer, got {t.batch_size}")
        _require(str(t.precision) in ("32", "16", "bf16"),
                 f"trainer.precision must be one of 32, bf16, 16, got {t.precision}")
        _require(t.label_smoothing >= 0 and t.label_smoothing < 1,
                 f"trainer.label_smoothing must be in [0, 1), got {t.label_smoothing}")
        _require(t.ema_decay is None or 0 < t.ema_decay < 1,
                 f"trainer.ema_decay must be in (0, 1) or null, got {t.ema_decay}")
        _require(cfg.optim.lr > 0, f"optim.lr must be positive, got {cfg.optim.lr}")
        _require(cfg.optim.weight_decay >= 0,
                 f"optim.weight_decay must be >= 0, got {cfg.optim.weight_decay}")
        _require(t.grad_clip is None or t.grad_clip > 0,
                 f"trainer.grad_clip (the largest gradient norm) must be > 0 or null, got {t.grad_clip}")
        _require(all(0 < m <= 1 for m in cfg.sched.milestones),
                 f"sched.milestones are shares of the training (0.5: halfway) in (0, 1], got {list(cfg.sched.milestones)}")
        _require(t.num_workers is None or t.num_workers >= 0,
                 f"trainer.num_workers must be >= 0 (or null: chosen for you), got {t.num_workers}")
    if "dataset" in cfg and OmegaConf.get_type(cfg.dataset) is DatasetConfig:  # eval's dataset holds only a root
        d = cfg.dataset
        _require(0 <= d.val_fraction < 1, f"dataset.val_fraction must be in [0, 1), got {d.val_fraction}")
        _require(d.subset is None or d.subset > 0, f"dataset.subset must be positive, got {d.subset}")
        _require(d.labeled_per_class is None or d.labeled_per_class > 0,
                 f"dataset.labeled_per_class must be positive, got {d.labeled_per_class}")
        _require(d.image_size > 0, f"dataset.image_size must be positive, got {d.image_size}")
        _require(d.cache in CACHE_MODES, f"dataset.cache must be one of {', '.join(CACHE_MODES)}, got {d.cache}")
        for key in ("mean", "std"):
            _require(len(d[key]) == 3, f"dataset.{key} needs one value per colour channel (3: images are read as "
                                       f"RGB), got {list(d[key])}")
        _require(all(value > 0 for value in d.std), f"dataset.std values must be > 0, got {list(d.std)}")
    if "model" in cfg:
        m = cfg.model
        _require(str(m.small_input).lower() in ("auto", "true", "false"),
                 f"model.small_input must be auto, true or false, got {m.small_input}")
        _require(0 <= m.dropout < 1, f"model.dropout must be in [0, 1), got {m.dropout}")
        _require(0 <= m.drop_path < 1, f"model.drop_path must be in [0, 1), got {m.drop_path}")
    if "aug" in cfg:
        _check_aug(cfg.aug)
    if "regime" in cfg:
        _check_regime(cfg.regime)
    if "draws" in cfg:
        for key in ("images", "draws", "cell"):
            _require(cfg[key] > 0, f"{key} must be a positive integer, got {cfg[key]}")


def _check_aug(a: Any) -> None:
    for key in ("hflip", "vflip", "rot90", "perspective", "erase", "prob"):
        _require(0 <= a[key] <= 1, f"aug.{key} is a probability and must be in [0, 1], got {a[key]}")
    _require(a.padding >= 0, f"aug.padding must be >= 0, got {a.padding}")
    _require(0 <= a.shift <= 255, f"aug.shift must be in [0, 255], got {a.shift}")
    for key in ("degrees", "shear"):
        _require(a[key] >= 0, f"aug.{key} must be >= 0, got {a[key]}")
    _require(0 <= a.distortion < 0.5, f"aug.distortion must be in [0, 0.5), got {a.distortion}")
    _require(len(a.scale) == 2 and 0 < a.scale[0] <= a.scale[1] <= 1,
             f"aug.scale must be [low, high] with 0 < low <= high <= 1, got {list(a.scale)}")
    _require(a.n >= 0, f"aug.n (RandAugment ops per image) must be >= 0, got {a.n}")
    _require(0 <= a.m <= 30, f"aug.m (RandAugment magnitude) must be in [0, 30], got {a.m}")
    _require(a.policy in AUTOAUGMENT_POLICY_NAMES,
             f"aug.policy must be one of {', '.join(AUTOAUGMENT_POLICY_NAMES)}, got {a.policy}")
    _require(a.mix is None or a.mix in MIX_NAMES,
             f"aug.mix must be null or one of {', '.join(MIX_NAMES)}, got {a.mix}")
    _require(a.alpha > 0, f"aug.alpha (Beta distribution of the mixing weight) must be > 0, got {a.alpha}")


def _check_regime(r: Any) -> None:
    _require(r.head_layers >= 1, f"regime.head_layers must be >= 1 (1: the output layer alone), got {r.head_layers}")
    _require(r.backbone_lr_mult >= 0, f"regime.backbone_lr_mult must be >= 0, got {r.backbone_lr_mult}")
    _require(r.freeze_epochs >= 0, f"regime.freeze_epochs must be >= 0, got {r.freeze_epochs}")
    _require(r.lambda_old >= 0, f"regime.lambda_old must be >= 0, got {r.lambda_old}")
    _require(r.temperature > 0, f"regime.temperature must be > 0, got {r.temperature}")
    _require(r.k >= 1, f"regime.k (neighbours that vote) must be >= 1, got {r.k}")
    _require(r.features in KNN_FEATURE_NAMES,
             f"regime.features must be one of {', '.join(KNN_FEATURE_NAMES)}, got {r.features}")
    _require(0 <= r.alpha <= 1, f"regime.alpha (weight of the distillation term) must be in [0, 1], got {r.alpha}")
    _require(0 <= r.threshold <= 1, f"regime.threshold (confidence cut) must be in [0, 1], got {r.threshold}")
    _require(r.unlabeled_weight >= 0, f"regime.unlabeled_weight must be >= 0, got {r.unlabeled_weight}")
    _require(r.rounds >= 1, f"regime.rounds must be >= 1, got {r.rounds}")
