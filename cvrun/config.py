"""Structured-config schema: every key a YAML file or an override may set.

The YAML files in configs/ hold the values; these dataclasses hold the names
and types, so that a misspelt key or a wrong type fails before any data is
read. This module must not import torch: the CLI uses it to check overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Dict, List, Optional

from cvrun.errors import UserError, require


@dataclass
class OptionConfig:
    """The base of every option's own schema (a model, a dataset, a regime, an aug option, a logger, ...): its
    name, and its checks."""

    name: str = "?"

    def check(self) -> None:
        """Range checks that types alone cannot express: a UserError naming the key and the allowed values."""

    def title(self) -> str:
        """How train.log names the option: its name, and what it wraps (model=timm: its architecture)."""
        return self.name

    @classmethod
    def complete(cls, cfg: Any) -> None:
        """Keys of other sections that this option sets where the user left them, once the whole config is typed
        (model=timm: the dataset's mean and std from its weights' pretrained config)."""


def path_field(*keywords: str) -> Any:
    """A key that names a file or folder (None by default): made absolute in the config saved with a run, quoted
    for Hydra on the command line, left out of sweep job folder names. `keywords`: values that name no path
    (model.pretrained=imagenet)."""
    return field(default=None, metadata={"path": True, "keywords": keywords})


# dataset.cache's modes (cvrun/data/cache.py says what each does).
CACHE_MODES = ("auto", "none", "ram", "disk")
# dataset.sampler's choices, and trainer.monitor's: each metric with the direction that is better.
SAMPLERS = ("none", "balanced")
# dataset.interpolation: the filter resizing images above 64 px (shrinking is area-averaged, as torchvision's
# antialias; cvrun/data/samples.py).
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area")
MONITORS = {"val_acc1": "maximize", "val_balanced_acc1": "maximize", "val_macro_f1": "maximize",
            "val_loss": "minimize"}
# trainer.monitor's choices in words.
MONITOR_NAMES = {"val_acc1": "validation top-1", "val_balanced_acc1": "validation balanced top-1",
                 "val_macro_f1": "validation macro-F1", "val_loss": "validation loss"}


@dataclass
class DatasetConfig(OptionConfig):
    """The keys every dataset source takes; a source with keys of its own subclasses it (data/shapes.py)."""

    name: str = "cifar10"
    root: Optional[str] = path_field()
    download: bool = True
    image_size: int = 32
    mean: List[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: List[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    subset: Optional[int] = None
    classes: Optional[List[str]] = None
    labeled_per_class: Optional[int] = None
    unlabeled_root: Optional[str] = path_field()
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
    cache_dir: Optional[str] = path_field()
    # The labeled training images' order each epoch: none (a seeded shuffle) or balanced (each class drawn
    # equally often; cvrun/data/sampling.py).
    sampler: str = "none"
    # A long tail made of the training set: class c keeps n_max x (1 / ratio)^(c / (C - 1)) images (Cui et al.
    # 2019's exponential profile; cvrun/data/splits.py); null: as it is.
    imbalance_ratio: Optional[float] = None
    # Images above 64 px keep their aspect ratio (cvrun/data/samples.py): decoded and cached with the shorter side
    # at stored_size (null: image_size / crop_pct; never enlarged), evaluated as the centre image_size crop of a
    # resize of the shorter side to image_size / crop_pct (timm's crop_pct; 1.0: resize only).
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    stored_size: Optional[int] = None

    def check(self) -> None:
        require(0 <= self.val_fraction < 1, f"dataset.val_fraction must be in [0, 1), got {self.val_fraction}")
        require(self.subset is None or self.subset > 0, f"dataset.subset must be positive, got {self.subset}")
        require(self.labeled_per_class is None or self.labeled_per_class > 0,
                f"dataset.labeled_per_class must be positive, got {self.labeled_per_class}")
        require(self.image_size > 0, f"dataset.image_size must be positive, got {self.image_size}")
        require(self.cache in CACHE_MODES, f"dataset.cache must be one of {', '.join(CACHE_MODES)}, got {self.cache}")
        require(self.sampler in SAMPLERS, f"dataset.sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler}")
        require(0 < self.crop_pct <= 1, f"dataset.crop_pct (the share of the resized image evaluated) must be in "
                f"(0, 1], got {self.crop_pct}")
        require(self.interpolation in INTERPOLATIONS,
                f"dataset.interpolation must be one of {', '.join(INTERPOLATIONS)}, got {self.interpolation}")
        require(self.stored_size is None or self.stored_size >= self.image_size,
                f"dataset.stored_size (the shorter side images are kept at) must be null or >= dataset.image_size "
                f"({self.image_size}), got {self.stored_size}")
        require(self.imbalance_ratio is None or self.imbalance_ratio >= 1,
                "dataset.imbalance_ratio (largest class over smallest) must be >= 1 or null, got "
                f"{self.imbalance_ratio}")
        for key in ("mean", "std"):
            require(len(getattr(self, key)) == 3, f"dataset.{key} needs one value per colour channel (3: images are "
                                                  f"read as RGB), got {list(getattr(self, key))}")
        require(all(value > 0 for value in self.std), f"dataset.std values must be > 0, got {list(self.std)}")


@dataclass
class ModelConfig(OptionConfig):
    """The keys every model takes; a model with keys of its own subclasses it (model=mlp's hidden)."""

    name: str = "resnet18"
    # null, imagenet (torchvision's weights), a run folder or a checkpoint
    pretrained: Optional[str] = path_field("imagenet")
    small_input: Any = "auto"
    dropout: float = 0.0
    drop_path: float = 0.0

    def check(self) -> None:
        require(str(self.small_input).lower() in ("auto", "true", "false"),
                f"model.small_input must be auto, true or false, got {self.small_input}")
        require(0 <= self.dropout < 1, f"model.dropout must be in [0, 1), got {self.dropout}")
        require(0 <= self.drop_path < 1, f"model.drop_path must be in [0, 1), got {self.drop_path}")


@dataclass
class OptimConfig(OptionConfig):
    """The keys every optimiser takes; each optimiser's schema adds its own (cvrun/engine/optimizers.py)."""

    name: str = "sgd"
    lr: float = 0.02
    weight_decay: float = 5e-4

    def check(self) -> None:
        require(self.lr > 0, f"optim.lr must be positive, got {self.lr}")
        require(self.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {self.weight_decay}")


@dataclass
class SchedConfig(OptionConfig):
    """The keys every schedule takes; each schedule's schema adds its own (cvrun/engine/schedules.py)."""

    name: str = "cosine"
    warmup_epochs: float = 0.0

    def check(self) -> None:
        require(self.warmup_epochs >= 0, f"sched.warmup_epochs must be >= 0, got {self.warmup_epochs}")


@dataclass
class TrainerConfig:
    epochs: int = 10
    # Regimes that count steps rather than passes over the labeled set: steps in one epoch; null: one pass
    # over the first training loader.
    steps_per_epoch: Optional[int] = None
    batch_size: int = 128
    eval_batch_size: Optional[int] = None
    device: str = "auto"
    precision: Any = 32
    seed: int = 0
    deterministic: bool = False
    resume: Optional[str] = path_field()
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
    # Gradient accumulation: an optimiser step every K batches (effective batch = batch_size x K).
    accumulate: int = 1
    # Stop after this many epochs without a validation top-1 gain of more than min_delta (0: never).
    early_stop_patience: int = 0
    early_stop_min_delta: float = 0.0
    # Steps between reads of the training loss: the divergence check, and the per-step values loggers get.
    log_every_n_steps: int = 50
    # Cross-entropy's class weights: none, balanced (n_images / (n_classes x count of the class) over the labeled
    # training split, scikit-learn's convention) or one weight per class.
    class_weights: Any = "none"
    # What chooses best.pt, early stopping and a search's objective (MONITORS).
    monitor: str = "val_acc1"


# The sections whose keys depend on the option chosen (model=..., regime=..., logger=[...]): each option has
# its own schema (an OptionConfig), found in its group's registry. The commands layer makes the registries
# known (cvrun.commands.register_option_groups): config stays below every package that registers options.
OPTION_SECTIONS = ("dataset", "model", "aug", "regime", "optim", "sched", "logger")
_REGISTRIES: dict[str, Any] = {}


def register_option_group(section: str, registry: Any) -> None:
    """Make a group's registry known: its entries' `config` are the schemas of the section's options."""
    _REGISTRIES[section] = registry


def option_registry(section: str) -> Any:
    if section not in _REGISTRIES:
        raise RuntimeError(f"the {section} registry is not known: call cvrun.commands.register_option_groups() "
                           "before validating a config")
    return _REGISTRIES[section]


# Optuna's pruners that hparams_search.pruner names (none: every trial trains all its epochs).
PRUNERS = ("none", "median", "successive_halving", "hyperband")


@dataclass
class SearchConfig:
    """An Optuna search's settings the trials share (hydra/sweeper=optuna; an hparams_search preset sets them).

    The sweeper reads them to run the study, each trial to report its validation top-1 every epoch.
    """

    pruner: str = "none"
    # Epochs every trial trains before the pruner may stop it (Optuna's n_warmup_steps / min_resource).
    pruner_warmup_epochs: int = 1
    # Median pruner: trials that must finish before it compares any.
    pruner_startup_trials: int = 4
    # Failed trials (a crash, a diverged loss) the search goes on after; one more stops it. Interrupted
    # ones do not count.
    max_failures: int = 3
    # A search's folder: carry its study on (finished trials stay, interrupted ones run again).
    resume: Optional[str] = path_field()


@dataclass
class OptunaSweeperConfig:
    """hydra/sweeper=optuna: cvrun's Optuna search (cvrun/search); the keys of Hydra's Optuna plugin that
    cvrun's presets and commands used keep their meaning."""

    _target_: str = "hydra_plugins.cvrun_optuna.OptunaSweeper"
    # Any Optuna sampler, built by Hydra: hydra.sweeper.sampler._target_=optuna.samplers.RandomSampler
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": None})
    # maximize or minimize each trial's best trainer.monitor; null: the monitor's own (minimize for val_loss)
    direction: Optional[str] = None
    study_name: str = "cvrun"
    # null: sqlite (the sweep folder's optuna.db), or journal (optuna.journal) under the slurm launcher;
    # or sqlite, journal, or an SQLAlchemy URL
    storage: Optional[str] = None
    n_trials: int = 20
    n_jobs: int = 1  # trials launched at once (the local_parallel and slurm launchers run them together)
    params: Dict[str, Any] = field(default_factory=dict)  # key: Hydra's sweep grammar (cvrun/search/space.py)


@dataclass
class PublishedConfig:
    """A figure a preset's source published (`published:` in configs/experiment/): `cvrun compare` shows the
    measured mean and 95% interval of `metric` beside it."""

    metric: str = "test_acc1"
    value: Optional[float] = None  # null: no published figure
    source: str = ""  # the paper, table or repository the figure comes from


@dataclass
class TrainConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    aug: Any = None  # the chosen aug option's schema (cvrun/augment/policies.py)
    regime: Any = None  # the chosen regime's schema (cvrun/regimes/<name>.py)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: Any = None  # {name: that logger's schema} for each logger in the list (cvrun/loggers/<name>.py)
    hparams_search: SearchConfig = field(default_factory=SearchConfig)
    published: PublishedConfig = field(default_factory=PublishedConfig)  # a preset's figure, for cvrun compare


@dataclass
class EvalConfig:
    run_dir: str = field(default="???", metadata={"path": True})
    split: str = "test"
    device: str = "auto"
    batch_size: Optional[int] = None
    progress: bool = True
    tta: bool = False  # also score the flip-averaged prediction (`cvrun eval RUN_DIR --tta`)
    # Where the run's data is now, when it has moved since training: its dataset's path keys (dataset.root=DIR,
    # dataset.path=FILE of a CSV source, ...), checked against the run's source (cvrun.commands.eval.move_data).
    dataset: Dict[str, Optional[str]] = field(default_factory=dict)


@dataclass
class InfoConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)


@dataclass
class PreviewConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    aug: Any = None
    images: int = 8  # rows: training images, spread over the classes
    draws: int = 7  # augmented draws per image, after the original
    cell: int = 128  # smallest cell size in pixels; small images are enlarged (nearest) to at least this
    seed: int = 0


@dataclass
class CheckDataConfig:
    """`cvrun check-data`: counts, unreadable files, sizes, exact and near duplicates (cvrun/commands/check_data.py)."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    # Near duplicates: 64-bit perceptual hashes differing in at most this many bits (cvrun/data/duplicates.py).
    # 6: on CIFAR-10, pairs at 4 bits or fewer were the same photo, at 6 about 4 in 5, at 8 about 2 in 5.
    near_threshold: int = 6
    fail_on_near: bool = False  # exit 1 also when test images have near duplicates in the training data
    pairs: int = 16  # the closest cross-split pairs pictured in pairs.png
    # The report's folder; null: outputs/check_data/<dataset>_<date>_<time>/ (never inside the data).
    out: Optional[str] = path_field()


SCHEMAS = {"train": TrainConfig, "eval": EvalConfig, "info": InfoConfig, "preview": PreviewConfig,
           "check_data": CheckDataConfig}


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
    """Merge a composed config onto its schema; a bad key or type, or a value left unset, is a UserError.

    The option sections (model, dataset, regime, aug, optim, sched, logger) are merged onto the schema of the
    option each names, so a key of another option is refused here, naming the keys this one takes.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        plain.pop("hydra", None)
        options = {section: plain.pop(section, None) for section in option_sections(schema)}
        typed = OmegaConf.merge(OmegaConf.structured(schema), plain)
    except MissingMandatoryValue as err:
        key = getattr(err, "full_key", "") or "?"
        raise UserError(f"{key} must be set: add {key}=... to the command") from None
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", "") or "?"
        reason = str(getattr(err, "msg", err)).splitlines()[0]
        raise UserError(f"config key '{key}': {reason}") from None
    for section, values in options.items():
        typed[section] = (typed_loggers(values) if section == "logger" else
                          typed_option(section, section_values(schema, section, values)))
    for section in [name for name in options if name != "logger"]:
        option = option_schema(section, typed[section].name)
        if issubclass(option, OptionConfig):
            option.complete(typed)
    check_values(typed)
    return typed


def _default(f: Any) -> Any:
    return f.default_factory() if callable(f.default_factory) else f.default


def option_sections(schema: type) -> list[str]:
    """The option sections a command's schema holds (train: all; eval's `dataset` holds only a root)."""
    return [f.name for f in fields(schema)
            if f.name in OPTION_SECTIONS and (_default(f) is None or isinstance(_default(f), OptionConfig))]


def section_values(schema: type, section: str, values: dict[str, Any] | None) -> dict[str, Any]:
    """An option section's values over its defaults: the schema's base option (model: resnet18 at
    ModelConfig's defaults), or where the schema names none, the option configs/train.yaml chooses."""
    from dataclasses import asdict

    default = next(_default(f) for f in fields(schema) if f.name == section)
    if default is None:
        return values or option_values(section, default_option(section))
    return {**asdict(default), **(values or {})}


def option_schema(section: str, name: str) -> type:
    """The schema of option `name` of an option section, from its group's registry."""
    return option_registry(section).get(name).config


def default_option(section: str) -> Any:
    """The option configs/train.yaml's defaults list chooses for a section (a list for the logger)."""
    from omegaconf import OmegaConf

    from cvrun.paths import config_dir

    for entry in OmegaConf.to_container(OmegaConf.load(config_dir() / "train.yaml"))["defaults"]:
        if isinstance(entry, dict) and section in entry:
            return entry[section]
    raise KeyError(section)


def option_values(section: str, name: str) -> dict[str, Any]:
    """What `section=name` composes: the option's YAML (cvrun's or a user's config folder), without its
    defaults list."""
    from omegaconf import OmegaConf

    path = option_yaml(section, name)
    values = OmegaConf.to_container(OmegaConf.load(path)) or {}
    values.pop("defaults", None)
    return values


def option_yaml(section: str, name: str) -> Any:
    """The YAML file of option `name` in <section>/ of cvrun's configs/ or a user's config folder (cvrun.paths);
    a UserError listing the options when there is none."""
    from cvrun.paths import option_file, option_files

    path = option_file(section, name)
    if path is None:
        options = sorted(option_files(section))
        raise UserError(f"unknown {section} '{name}'; valid {section} options: {', '.join(options)}")
    return path


def option_names(section: str, schema: type) -> list[str]:
    """The options of a section whose schema is `schema` (several options may share their group's base schema)."""
    return [name for name, entry in option_registry(section).items() if getattr(entry, "config", None) is schema]


# Above this many options sharing one schema, a message names only the option chosen.
LISTED_OPTIONS = 4


def keys_taken(section: str, schema: type, chosen: str | None = None) -> str:
    """'aug=rotate takes ..., degrees, rot90': for a message about a key the option does not take."""
    sharing = option_names(section, schema)
    names = chosen if chosen and (len(sharing) > LISTED_OPTIONS or chosen not in sharing) else "/".join(sharing)
    takes = ", ".join(f.name for f in fields(schema) if f.name != "name")
    return f"{section}={names or '?'} takes {takes or 'no keys but its name'}"


# Keys that every option of a group had before each option had its own schema: a config saved then holds
# them at these values whatever the option (model=lenet5 with hidden: []). Loading it drops them where the
# option does not take them and they hold these values; any other value is refused as a key of another option.
MOVED_KEYS = {"model": {"hidden": []}, "dataset": {"train_size": 1200, "test_size": 500},
              "optim": {"momentum": 0.9, "nesterov": True, "betas": [0.9, 0.999]},
              "sched": {"min_lr": 0.0, "milestones": [0.5, 0.75], "gamma": 0.1, "pct_start": 0.25}}


def without_moved_keys(section: str, values: dict[str, Any], config: type) -> dict[str, Any]:
    taken = {f.name for f in fields(config)}
    moved = MOVED_KEYS.get(section, {})
    return {key: value for key, value in values.items()
            if key in taken or key not in moved or value != moved[key]}


def typed_option(section: str, values: dict[str, Any], prefix: str | None = None) -> Any:
    """One option's values on its own schema, checked; a key it does not take is a UserError naming its keys."""
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

    prefix = prefix or section
    name = values.get("name")
    if name is None:
        raise UserError(f"{prefix}.name must be set: choose one with {section}=...")
    config = option_schema(section, str(name))
    try:
        node = OmegaConf.merge(OmegaConf.structured(config), without_moved_keys(section, values, config))
    except ConfigKeyError as err:
        raise UserError(f"unknown config key '{prefix}.{getattr(err, 'key', '?')}'; "
                        f"{keys_taken(section, config, str(name))}") from None
    except OmegaConfBaseException as err:
        reason = str(getattr(err, "msg", err)).splitlines()[0]
        raise UserError(f"config key '{prefix}.{getattr(err, 'key', '?')}': {reason}") from None
    OmegaConf.to_object(node).check()
    return node


def typed_loggers(values: dict[str, Any] | None) -> Any:
    """The logger section: {name: that logger's typed config} for each logger chosen (default: csv)."""
    from omegaconf import OmegaConf

    chosen = values if values is not None else {name: {} for name in default_option("logger")}
    return OmegaConf.create({name: typed_option("logger", {**(options or {}), "name": name}, f"logger.{name}")
                             for name, options in chosen.items()})


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
    from cvrun.paths import launch_path

    if dataset.root is not None:
        dataset.root = str(launch_path(dataset.root))


def is_path(f: Any) -> bool:
    return bool(f.metadata.get("path"))


def schema_path_keys(schema: type, prefix: str = "") -> set[str]:
    """The dotted keys of a schema that name files or folders, with those of every option of its option
    sections (as their groups' registries hold them)."""
    found: set[str] = set()
    for f in fields(schema):
        key = f"{prefix}{f.name}"
        if is_path(f):
            found.add(key)
        if f.name in option_sections(schema):
            for name, entry in option_registry(f.name).items():
                found |= schema_path_keys(entry.config, f"{key}.{name}." if f.name == "logger" else f"{key}.")
        elif is_dataclass(_default(f)):
            found |= schema_path_keys(type(_default(f)), f"{key}.")
    return found


def path_keys() -> set[str]:
    """Every key of every command's config that names a file or folder (a path_field in its schema)."""
    return {key for schema in SCHEMAS.values() for key in schema_path_keys(schema)}


def absolute_paths(cfg: Any) -> None:
    """Every path of a validated config made absolute (the keys its schemas mark), for the config saved with a
    run; a path key's keywords (model.pretrained=imagenet) stay as they are. A relative path means the folder
    cvrun was started in, also in a job that hydra.job.chdir=true moved (cvrun.paths.launch_path)."""
    from omegaconf import OmegaConf

    from cvrun.paths import launch_path

    schema = OmegaConf.get_type(cfg)
    for key in cfg:
        value = cfg[key]
        if OmegaConf.is_dict(value):
            absolute_paths(value)
            continue
        f = next((f for f in fields(schema) if f.name == key), None) if is_dataclass(schema) else None
        if f is not None and is_path(f) and value is not None and value not in f.metadata.get("keywords", ()):
            cfg[key] = str(launch_path(value))


def check_class_weights(weights: Any) -> None:
    """trainer.class_weights: none, balanced or a list of positive numbers (its length is checked against the
    classes once the data is known)."""
    if isinstance(weights, (str, type(None))):
        require(weights in ("none", "balanced", None),
                f"trainer.class_weights must be none, balanced or one weight per class ([1.0,2.0,...]), got {weights}")
        return
    values = list(weights) if not isinstance(weights, (int, float, bool)) else None
    require(values is not None and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                                       for v in values),
            f"trainer.class_weights as a list must hold one positive number per class, got {weights}")


def check_values(cfg: Any) -> None:
    """Range checks that types alone cannot express (each option's own are its schema's check())."""
    if "trainer" in cfg:
        t = cfg.trainer
        require(t.epochs > 0, f"trainer.epochs must be a positive integer, got {t.epochs}")
        require(t.batch_size > 0, f"trainer.batch_size must be a positive integer, got {t.batch_size}")
        require(str(t.precision) in ("32", "16", "bf16"),
                 f"trainer.precision must be one of 32, bf16, 16, got {t.precision}")
        require(t.label_smoothing >= 0 and t.label_smoothing < 1,
                 f"trainer.label_smoothing must be in [0, 1), got {t.label_smoothing}")
        require(t.ema_decay is None or 0 < t.ema_decay < 1,
                 f"trainer.ema_decay must be in (0, 1) or null, got {t.ema_decay}")
        require(t.grad_clip is None or t.grad_clip > 0,
                 f"trainer.grad_clip (the largest gradient norm) must be > 0 or null, got {t.grad_clip}")
        require(t.num_workers is None or t.num_workers >= 0,
                 f"trainer.num_workers must be >= 0 (or null: chosen for you), got {t.num_workers}")
        require(t.accumulate >= 1, f"trainer.accumulate (batches per optimiser step) must be >= 1, got {t.accumulate}")
        require(t.early_stop_patience >= 0 and t.early_stop_min_delta >= 0,
                 "trainer.early_stop_patience and trainer.early_stop_min_delta must be >= 0 (patience 0: never stop "
                 f"early), got {t.early_stop_patience} and {t.early_stop_min_delta}")
        require(t.steps_per_epoch is None or t.steps_per_epoch > 0,
                 f"trainer.steps_per_epoch must be positive or null (one pass), got {t.steps_per_epoch}")
        require(t.log_every_n_steps >= 1, f"trainer.log_every_n_steps must be >= 1, got {t.log_every_n_steps}")
        require(t.monitor in MONITORS, f"trainer.monitor must be one of {', '.join(MONITORS)}, got {t.monitor}")
        check_class_weights(t.class_weights)
    if "hparams_search" in cfg:
        h = cfg.hparams_search
        require(h.pruner in PRUNERS, f"hparams_search.pruner must be one of {', '.join(PRUNERS)}, got {h.pruner}")
        # One key per message: the command line's checks see one key at a time, the others at their defaults.
        require(h.pruner_warmup_epochs >= 1,
                f"hparams_search.pruner_warmup_epochs must be >= 1, got {h.pruner_warmup_epochs}")
        require(h.pruner_startup_trials >= 0,
                f"hparams_search.pruner_startup_trials must be >= 0, got {h.pruner_startup_trials}")
        require(h.max_failures >= 0, f"hparams_search.max_failures must be >= 0, got {h.max_failures}")
    if "draws" in cfg:
        for key in ("images", "draws", "cell"):
            require(cfg[key] > 0, f"{key} must be a positive integer, got {cfg[key]}")
    if "near_threshold" in cfg:
        require(0 <= cfg.near_threshold <= 64, "near_threshold (the bits in which two images' 64-bit perceptual "
                f"hashes may differ, for near duplicates) must be in [0, 64], got {cfg.near_threshold}")
        require(cfg.pairs >= 0, f"pairs (the closest pairs pictured) must be >= 0, got {cfg.pairs}")
