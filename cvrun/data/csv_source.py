"""`dataset=csv`: image files listed in a CSV or TSV file with their labels (`dataset.path`).

Each row names an image file (dataset.path_column, below dataset.image_dir, by default the CSV file's
folder; dataset.path_suffix is added to each, for Kaggle's id columns) and its label (dataset.label_column:
class names, or integers that dataset.label_names may name). The test split is, in this order of
preference: the rows whose dataset.split_column says test (train, val and test rows), the rows of a
second file (dataset.test_path), or a stratified share dataset.test_fraction of the rows held out with
dataset.split_seed. The source is a list of file paths and labels, as an image-folder tree's: splits,
fingerprints, caches and the semi-supervised pool work on it unchanged. Loading reads the CSV and looks
for each file, decoding nothing, so the whole file is checked before a run folder is made; a bad row is
one line naming its line number and what to fix.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, List, Optional

import numpy as np

from cvrun.config import DatasetConfig, path_field
from cvrun.data.samples import Samples
from cvrun.data.sources import Source, register_source
from cvrun.data.splits import per_class_counts, stratified_pick
from cvrun.errors import UserError, require

# What a split column's values may say, and the split each names.
SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass
class CsvConfig(DatasetConfig):
    # The labels file: a CSV, or a TSV (tab-separated: by the .tsv extension, else sniffed).
    path: Optional[str] = path_field()
    path_column: str = "path"
    label_column: str = "label"
    # A column saying train, val or test for each row; null: no such column.
    split_column: Optional[str] = None
    # Without a split column: a second file with the same columns holding the test rows ...
    test_path: Optional[str] = path_field()
    # ... or, without one, this share of the rows held out as the test split (stratified, dataset.split_seed).
    test_fraction: float = 0.2
    # The folder the paths are below; null: the folder of dataset.path.
    image_dir: Optional[str] = path_field()
    # Added to each path (Kaggle's train.csv names images by id: path_suffix=.png).
    path_suffix: str = ""
    # Integer labels: label i is named label_names[i]. Name labels: the class order (else sorted).
    label_names: Optional[List[str]] = None

    def check(self) -> None:
        super().check()
        require(0 < self.test_fraction < 1, f"dataset.test_fraction must be in (0, 1), got {self.test_fraction}")
        require(not (self.split_column and self.test_path), "dataset.split_column and dataset.test_path both say "
                "where the test rows are; give one of them")


@dataclass
class Row:
    line: int  # in the file, the header being line 1
    path: str  # as the file writes it, path_suffix added
    label: str
    split: str  # train, val or test


def _delimiter(path: Path, head: str) -> str:
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    try:
        return csv.Sniffer().sniff(head, delimiters=",\t;|").delimiter
    except csv.Error:
        return ","


def read_rows(path: Path, cfg: Any, split: str | None) -> list[Row]:
    """The rows of a labels file; `split`: every row's split, else the split column's (else train)."""
    if not path.is_file():
        raise UserError(f"dataset.path={path}: {'no such file' if not path.exists() else 'a folder, not a file'}; "
                        "point it at a CSV or TSV file of image paths and labels")
    try:
        rows = _records(path, cfg, split)
    except (UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"dataset.path={path} cannot be read as CSV or TSV text ({err}); save it as UTF-8 "
                        "comma- or tab-separated text") from None
    if not rows:
        raise UserError(f"{path} has a header but no rows; add a row per image")
    return rows


def _records(path: Path, cfg: Any, split: str | None) -> list[Row]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter=_delimiter(path, handle.read(64 * 1024)))
        handle.seek(0)
        wanted = {"dataset.path_column": cfg.path_column, "dataset.label_column": cfg.label_column}
        if split is None and cfg.split_column:
            wanted["dataset.split_column"] = cfg.split_column
        columns = reader.fieldnames or []
        for key, column in wanted.items():
            if column not in columns:
                raise UserError(f"{path.name} has no column '{column}' (its columns: {', '.join(columns) or 'none'}); "
                                f"set {key} to the column that holds it")
        rows = []
        for record in reader:
            value = (record.get(cfg.split_column) or "").strip().lower() if split is None and cfg.split_column \
                else (split or "train")
            rows.append(Row(reader.line_num, (record.get(cfg.path_column) or "").strip() + cfg.path_suffix,
                            (record.get(cfg.label_column) or "").strip(), SPLIT_VALUES.get(value, value)))
    return rows


def first_bad(rows: list[Row], problem: Any, name: str, fix: str) -> None:
    """A UserError naming the first row `problem(row)` finds fault with (a phrase), and how many more there are."""
    bad = [(row, message) for row in rows if (message := problem(row))]
    if bad:
        row, message = bad[0]
        more = f" (and {len(bad) - 1} more row{'s' if len(bad) > 2 else ''} like it)" if len(bad) > 1 else ""
        raise UserError(f"{name} line {row.line}: {message}{more}; {fix}")


def class_names_of(train_labels: list[str], cfg: Any) -> list[str]:
    """dataset.label_names, else the training rows' labels sorted (numerically when all are integers)."""
    if cfg.label_names:
        return [str(name) for name in cfg.label_names]
    labels = {str(int(label)) if _is_integer(label) else label for label in train_labels}
    if all(_is_integer(label) for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def _is_integer(text: str) -> bool:
    return text.lstrip("-").isdigit()


def label_indices(class_names: list[str], cfg: Any) -> dict[str, int]:
    """Each label text a file may hold -> its class index: the names; integers (a label of 007 is 7) index
    dataset.label_names where given, else name the classes of those integers."""
    if cfg.label_names:
        return {**{str(i): i for i in range(len(class_names))}, **{name: i for i, name in enumerate(class_names)}}
    return {name: i for i, name in enumerate(class_names)}


def label_index(label: str, indices: dict[str, int]) -> int | None:
    return indices.get(str(int(label)) if _is_integer(label) else label)


def load_rows(cfg: Any) -> tuple[list[Row], dict[int, str]]:
    """Every row of the labels file (and of dataset.test_path), with the file each row came from by row index."""
    if cfg.path is None:
        raise UserError("dataset=csv needs dataset.path: the CSV or TSV file of image paths and labels; "
                        "add dataset.path=FILE")
    main = Path(cfg.path).expanduser()
    rows = read_rows(main, cfg, None)
    where = {i: main.name for i in range(len(rows))}
    if cfg.test_path and not cfg.split_column:
        test_file = Path(cfg.test_path).expanduser()
        test_rows = read_rows(test_file, cfg, "test")
        where.update({len(rows) + i: test_file.name for i in range(len(test_rows))})
        rows += test_rows
    return rows, where


def check_rows(rows: list[Row], where: dict[int, str], cfg: Any, image_dir: str) -> list[str]:
    """The class names, once every row is good: a split, a path to an existing file, a known label."""
    by_file: dict[str, list[Row]] = {}
    for i, row in enumerate(rows):
        by_file.setdefault(where[i], []).append(row)
    for name, file_rows in by_file.items():
        first_bad(file_rows, lambda row: None if row.split in ("train", "val", "test") else
                  f"split '{row.split}' in column {cfg.split_column}", name, "write train, val or test there")
        first_bad(file_rows, lambda row: None if row.path != cfg.path_suffix else f"no image path in column "
                  f"{cfg.path_column}", name, "fill it in or remove the row")
        first_bad(file_rows, lambda row: None if row.label else f"no label in column {cfg.label_column}", name,
                  "fill it in or remove the row")
        first_bad(file_rows, lambda row: None if os.path.isfile(os.path.join(image_dir, row.path)) else
                  f"image {os.path.join(image_dir, row.path)} does not exist", name,
                  "fix the path (paths are below dataset.image_dir, by default the CSV file's folder) or remove "
                  "the row")
    class_names = class_names_of([row.label for row in rows if row.split == "train"], cfg)
    indices = label_indices(class_names, cfg)
    for name, file_rows in by_file.items():
        first_bad(file_rows, lambda row: None if label_index(row.label, indices) is not None else
                  f"label '{row.label}' is not a class of the training rows ({', '.join(class_names)})", name,
                  "fix the label, add training rows of it, or list every class in dataset.label_names")
    return class_names


def samples_of(rows: list[Row], class_names: list[str], cfg: Any, image_dir: str) -> Samples:
    """The rows' files and labels; each image named by its path as the file writes it."""
    indices = label_indices(class_names, cfg)
    labels = np.asarray([label_index(row.label, indices) for row in rows], dtype=np.int64)
    return Samples(labels=labels, true_labels=labels.copy(),
                   paths=np.asarray([os.path.join(image_dir, row.path) for row in rows], dtype=object),
                   ids=np.asarray([os.path.normpath(row.path) for row in rows], dtype=object))


def held_out_test(train: Samples, fraction: float, seed: int) -> tuple[Samples, Samples]:
    """(train, test): a stratified share `fraction` of the training images held out as the test split, drawn
    with `seed` (dataset.split_seed) before any of build_splits' draws, so it moves with nothing else."""
    held = stratified_pick(train.labels, per_class_counts(train.labels, round(fraction * len(train))),
                           np.random.default_rng(seed))
    return train.take(np.setdiff1d(np.arange(len(train)), held)), train.take(held)


def plain(cfg: Any) -> SimpleNamespace:
    """The dataset config's values as plain attributes: an OmegaConf attribute read costs about 80 us, which
    per row of a large labels file would take most of the load."""
    from omegaconf import OmegaConf

    return SimpleNamespace(**OmegaConf.to_container(cfg, resolve=True)) if OmegaConf.is_config(cfg) else cfg


def check_labels_file(cfg: Any) -> None:
    """Every row, before a run folder is made: the file is read and each image looked for, none decoded."""
    labels_file(cfg)


@register_source("csv", config=CsvConfig, check=check_labels_file, listed=True)
def labels_file(cfg: Any) -> Source:
    cfg = plain(cfg)
    rows, where = load_rows(cfg)
    image_dir = str(Path(cfg.image_dir).expanduser() if cfg.image_dir else Path(cfg.path).expanduser().parent)
    class_names = check_rows(rows, where, cfg, image_dir)
    splits = {split: samples_of([row for row in rows if row.split == split], class_names, cfg, image_dir)
              for split in ("train", "val", "test")}
    train, val, test = splits["train"], splits["val"], splits["test"]
    if len(train) == 0:
        raise UserError(f"{Path(cfg.path).name} has no training rows (split column {cfg.split_column}); mark some "
                        "rows train")
    if len(test) == 0:
        if cfg.split_column:
            raise UserError(f"{Path(cfg.path).name} has no test rows (split column {cfg.split_column}); mark some "
                            "rows test, or set dataset.split_column=null to hold out dataset.test_fraction")
        train, test = held_out_test(train, cfg.test_fraction, cfg.split_seed)
    return Source(class_names, train, test, val if len(val) else None)
