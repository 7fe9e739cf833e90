"""`dataset=hf`: a Hugging Face `datasets` dataset on local disk (`dataset.path`), never downloaded.

dataset.path is a folder written by `save_to_disk` (a DatasetDict, or one Dataset: its training split), or
parquet / arrow files: one file (the training split) or a folder of them, each file's split the start of
its name up to the first '-' or '.' (the Hub's layout: data/train-00000-of-00002.parquet, test.parquet).
dataset.split_names maps cvrun's train, val and test to the dataset's split names (train, validation,
test): a val split that the dataset lacks is held out of train by dataset.val_fraction, as for an
image-folder tree; test=null holds out dataset.test_fraction of the training split instead (stratified,
dataset.split_seed). Class names come from the label column's ClassLabel feature, else from its values
sorted.

The images (PIL images or encoded bytes in the dataset's image column) are decoded once, at load, into
arrays at the size they are held at (small images: the image_size square; larger ones: the shorter side at
dataset.stored_size, aspect kept), on every core: the same in-memory Samples as torchvision's CIFAR or
shapes, so splits, fingerprints, the semi-supervised pool, inspect and predict work unchanged. That holds
every image in memory, as dataset.cache=ram does for image files: 3 KB an image at 32 px (CIFAR-10's
60,000: 176 MB), about 260 KB at 224 px (a 4:3 photo stored at 256 x 341). A set whose decoded images would
take more than half of this machine's memory is refused with a line saying so; such a set is better written
out as files (dataset=csv), which are decoded as they are read. Parquet files are read into memory (compressed images:
about their size on disk); save_to_disk and arrow files are memory-mapped.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import cv2
import numpy as np

from cvrun.config import DatasetConfig, path_field
from cvrun.data.csv_source import held_out_test, plain
from cvrun.data.samples import RaggedImages, Samples, Sizing
from cvrun.data.sources import Source, register_source
from cvrun.errors import UserError, require

SPLITS = ("train", "val", "test")
# Files a save_to_disk folder holds (a DatasetDict's, a Dataset's).
SAVED_MARKERS = ("dataset_dict.json", "state.json")
TABLE_SUFFIXES = (".parquet", ".arrow")
DECODE_BATCH = 512  # rows of encoded images held at once while decoding


@dataclass
class HfConfig(DatasetConfig):
    # A save_to_disk folder, a .parquet / .arrow file, or a folder of them.
    path: Optional[str] = path_field()
    image_column: str = "image"
    label_column: str = "label"
    # cvrun's splits -> the dataset's split names; val or test null: held out of train (val_fraction,
    # test_fraction).
    split_names: Dict[str, Optional[str]] = field(
        default_factory=lambda: {"train": "train", "val": "validation", "test": "test"})
    test_fraction: float = 0.2

    def check(self) -> None:
        super().check()
        unknown = sorted(set(self.split_names) - set(SPLITS))
        require(not unknown, f"dataset.split_names.{', '.join(unknown)}: the splits named are train, val and test")
        require(bool(self.split_names.get("train")), "dataset.split_names.train must name the dataset's training "
                                                     "split")
        require(0 < self.test_fraction < 1, f"dataset.test_fraction must be in (0, 1), got {self.test_fraction}")


def datasets_package() -> Any:
    try:
        import datasets
    except ImportError:
        raise UserError('dataset=hf needs the datasets package: pip install "cvrun[hf]"') from None
    return datasets


def table_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if path.suffix in TABLE_SUFFIXES else []
    return sorted(p for p in path.rglob("*") if p.suffix in TABLE_SUFFIXES and p.is_file())


def split_of(file: Path) -> str:
    """A file's split by the Hub's naming: its name up to the first '-' or '.'."""
    return file.name.replace("-", ".").split(".")[0]


def read_table_file(file: Path) -> Any:
    """One parquet file (read into memory) or arrow file (memory-mapped) as a Dataset, its features from the
    file's own metadata."""
    datasets = datasets_package()
    if file.suffix == ".arrow":
        return datasets.Dataset.from_file(str(file))
    import pyarrow.parquet

    from datasets.table import InMemoryTable

    return datasets.Dataset(InMemoryTable(pyarrow.parquet.read_table(file)))


def open_dataset(cfg: Any) -> dict[str, Any]:
    """The dataset's splits by their names, nothing decoded."""
    datasets = datasets_package()
    if cfg.path is None:
        raise UserError("dataset=hf needs dataset.path: a folder written by save_to_disk, or parquet / arrow files; "
                        "add dataset.path=PATH")
    path = Path(cfg.path).expanduser()
    if not path.exists():
        raise UserError(f"dataset.path={path} does not exist; point it at a folder written by save_to_disk, or at "
                        "parquet / arrow files")
    try:
        if path.is_dir() and any((path / marker).is_file() for marker in SAVED_MARKERS):
            saved = datasets.load_from_disk(str(path))
            return dict(saved) if isinstance(saved, datasets.DatasetDict) else {cfg.split_names["train"]: saved}
        files = table_files(path)
        if not files:
            raise UserError(f"dataset.path={path} is not a Hugging Face dataset: it holds no save_to_disk files "
                            f"({', '.join(SAVED_MARKERS)}) and no .parquet or .arrow files")
        if path.is_file():
            return {cfg.split_names["train"]: read_table_file(path)}
        grouped: dict[str, list[Path]] = {}
        for file in files:
            grouped.setdefault(split_of(file), []).append(file)
        return {name: datasets.concatenate_datasets([read_table_file(f) for f in group])
                for name, group in grouped.items()}
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - pyarrow's and datasets' errors (a damaged or empty file): one mistake
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"dataset.path={path} cannot be read as a Hugging Face dataset ({first}); point it at "
                        "a folder written by save_to_disk, or at parquet / arrow files") from None


@dataclass
class Plan:
    """What the dataset gives, before any image is decoded: the class names, and per cvrun split (train, val,
    test) the dataset's split name, its rows and their class indices."""

    class_names: list[str]
    names: dict[str, str]
    rows: dict[str, Any]
    labels: dict[str, np.ndarray]


def chosen_splits(cfg: Any, available: dict[str, Any]) -> dict[str, str]:
    """cvrun split -> the dataset's split name, for the splits the dataset gives."""
    names = {}
    for split in SPLITS:
        name = cfg.split_names.get(split)
        if name is None:
            continue
        if name in available:
            names[split] = name
        elif split != "val":  # no validation split: dataset.val_fraction holds one out, as for an image tree
            hold = " or dataset.split_names.test=null to hold out dataset.test_fraction" if split == "test" else ""
            raise UserError(f"dataset.path={cfg.path} has no split '{name}' (its splits: {', '.join(available)}); "
                            f"set dataset.split_names.{split} to one of them{hold}")
    return names


def check_columns(cfg: Any, split: str, rows: Any) -> None:
    """The image and label columns are there, and the image column holds images (datasets' Image, or bytes)."""
    for key, column in (("dataset.image_column", cfg.image_column), ("dataset.label_column", cfg.label_column)):
        if column not in rows.column_names:
            raise UserError(f"the {split} split of {cfg.path} has no column '{column}' (its columns: "
                            f"{', '.join(rows.column_names)}); set {key} to the column that holds it")
    feature = rows.features[cfg.image_column]
    if type(feature).__name__ != "Image" and getattr(feature, "dtype", None) not in ("binary", "large_binary"):
        raise UserError(f"column {cfg.image_column} of the {split} split of {cfg.path} holds {feature}, not images; "
                        "set dataset.image_column to the column of images")


def label_keys(cfg: Any, rows: Any, values: list[Any]) -> list[str]:
    """Each label as a class name: a ClassLabel's name for its index, else the value as text."""
    feature = rows.features[cfg.label_column]
    names = list(feature.names) if hasattr(feature, "names") else None
    return [names[v] if names is not None and 0 <= v < len(names) else str(v) for v in values]


def label_values(cfg: Any, split: str, rows: Any) -> list[Any]:
    values = list(rows[cfg.label_column])
    missing = next((i for i, value in enumerate(values) if value is None or value == -1 or value == ""), None)
    if missing is not None:
        raise UserError(f"row {missing} of the {split} split of {cfg.path} has no label (column {cfg.label_column}: "
                        f"{values[missing]!r}); give it one, or leave that split out of dataset.split_names")
    return values


def plan(cfg: Any) -> Plan:
    cfg = plain(cfg)
    available = open_dataset(cfg)
    names = chosen_splits(cfg, available)
    rows = {split: available[name] for split, name in names.items()}
    for split, table in rows.items():
        check_columns(cfg, names[split], table)
    values = {split: label_values(cfg, names[split], table) for split, table in rows.items()}
    feature = rows["train"].features[cfg.label_column]
    # The ClassLabel's names (in its order, classes without rows included), else the training values sorted.
    class_names = (list(feature.names) if hasattr(feature, "names")
                   else [str(value) for value in sorted(set(values["train"]))])
    index = {name: i for i, name in enumerate(class_names)}
    labels = {}
    for split, split_values in values.items():
        keys = label_keys(cfg, rows[split], split_values)
        unknown = next((i for i, key in enumerate(keys) if key not in index), None)
        if unknown is not None:
            raise UserError(f"row {unknown} of the {names[split]} split of {cfg.path} has label '{keys[unknown]}', "
                            f"not a class of the training split ({', '.join(class_names)}); fix it or add training "
                            "rows of it")
        labels[split] = np.asarray([index[key] for key in keys], dtype=np.int64)
    return Plan(class_names, names, rows, labels)


def check_saved_dataset(cfg: Any) -> None:
    """The splits, columns and labels, before a run folder is made (the dataset is opened, no image decoded)."""
    plan(cfg)


def refuse_too_large(cfg: Any, count: int, sizing: Sizing) -> None:
    side = sizing.image_size if sizing.small else sizing.stored_side
    needed = count * side * side * 3 * (1 if sizing.small else 4 / 3)  # photos reckoned at 4:3
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > memory / 2:
        raise UserError(f"dataset=hf holds its images decoded in memory: {count} images at {side} px need about "
                        f"{needed / 2**30:.0f} GB, more than half of this machine's {memory / 2**30:.0f} GB; "
                        "write them out as image files (dataset=csv) or lower dataset.image_size")


def decode_one(cell: Any, sizing: Sizing, where: str) -> np.ndarray:
    """An image cell (datasets' undecoded Image: bytes and/or a path; or raw bytes) as the image it is held as."""
    encoded, path = (cell.get("bytes"), cell.get("path")) if isinstance(cell, dict) else (cell, None)
    bgr = None
    if encoded is not None:
        bgr = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
    elif path:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise UserError(f"{where} cannot be decoded as an image; fix or remove that row")
    return sizing.store(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def decode_split(cfg: Any, name: str, rows: Any, sizing: Sizing) -> np.ndarray | RaggedImages:
    """Every image of a split, decoded on every core (OpenCV releases the GIL), DECODE_BATCH rows at a time; small
    images straight into their one array."""
    datasets = datasets_package()
    column = rows.select_columns([cfg.image_column])
    if isinstance(column.features[cfg.image_column], datasets.Image):
        column = column.cast_column(cfg.image_column, datasets.Image(decode=False))
    size = sizing.image_size
    held: Any = np.empty((len(rows), size, size, 3), np.uint8) if sizing.small else [None] * len(rows)

    def decode_into(index: int, cell: Any) -> None:
        held[index] = decode_one(cell, sizing, f"row {index} of the {name} split of {cfg.path}")

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for start, batch in zip(range(0, len(rows), DECODE_BATCH), column.iter(batch_size=DECODE_BATCH)):
            cells = batch[cfg.image_column]
            list(pool.map(decode_into, range(start, start + len(cells)), cells))
    return held if sizing.small else RaggedImages.stack(held)


@register_source("hf", config=HfConfig, check=check_saved_dataset)
def saved_dataset(cfg: Any) -> Source:
    cfg = plain(cfg)
    found = plan(cfg)
    sizing = Sizing.of(cfg)
    refuse_too_large(cfg, sum(len(rows) for rows in found.rows.values()), sizing)
    samples = {}
    for split, rows in found.rows.items():
        name, labels = found.names[split], found.labels[split]
        samples[split] = Samples(labels=labels, true_labels=labels.copy(),
                                 images=decode_split(cfg, name, rows, sizing),
                                 ids=np.asarray([f"{name}/{i}" for i in range(len(labels))], dtype=object))
    train, test = samples["train"], samples.get("test")
    if test is None:
        train, test = held_out_test(train, cfg.test_fraction, cfg.split_seed)
    return Source(found.class_names, train, test, samples.get("val"))
