"""`cvrun shard SRC OUT [--per-shard N] [--seed S] [dataset.KEY=VALUE ...]`: an image-folder tree (train/<class>/,
test/<class>/, val/<class>/ if any) or a CSV/TSV labels file (dataset=csv's keys: dataset.label_column=...) written
as WebDataset tar shards for dataset=shards: OUT/train-000000.tar ..., test-*.tar, val-*.tar, and classes.txt.

Each sample is the image file's bytes as they are (nothing re-encoded: <key>.jpg, <key>.png, ...) and <key>.cls,
its class index, written by webdataset's ShardWriter. The samples of each split are shuffled with --seed before
they are cut into shards of --per-shard, so every shard holds every class in proportion. The command prints the
dataset.shards patterns to train with.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

from cvrun.commands import OneLineParser, run_parsed
from cvrun.errors import UserError

LABELS_SUFFIXES = (".csv", ".tsv", ".tab", ".txt")
SPLIT_KEYS = {"train": "dataset.shards", "val": "dataset.val_shards", "test": "dataset.test_shards"}


def source_config(src: Path, overrides: list[str]) -> Any:
    """dataset=imagefolder at a folder, dataset=csv at a labels file, with the KEY=VALUE overrides given."""
    from omegaconf import OmegaConf

    from cvrun.config import option_values, typed_option

    if not src.exists():
        raise UserError(f"{src} does not exist; name an image-folder tree (train/<class>/, test/<class>/) or a CSV/TSV "
                        "labels file")
    if src.is_file() and src.suffix.lower() not in LABELS_SUFFIXES:
        raise UserError(f"{src} is neither a folder nor a labels file ({', '.join(LABELS_SUFFIXES)}); name an "
                        "image-folder tree or a CSV/TSV file of paths and labels")
    name, where = ("csv", {"path": str(src)}) if src.is_file() else ("imagefolder", {"root": str(src)})
    bad = [arg for arg in overrides if not arg.startswith("dataset.") or "=" not in arg]
    if bad:
        raise UserError(f"{bad[0]}: after SRC and OUT, give dataset keys as dataset.KEY=VALUE "
                        "(dataset.label_column=species)")
    values = OmegaConf.to_container(OmegaConf.from_dotlist([arg[len("dataset."):] for arg in overrides]))
    return typed_option("dataset", {**option_values("dataset", name), **where, **values})


def encoded(samples: Any, order: Any) -> Iterator[tuple[bytes, str, int]]:
    """Each sample in `order`: its image file's bytes, extension (no dot, lower case) and label."""
    for index in order:
        path = samples.paths[index]
        with open(path, "rb") as handle:
            yield handle.read(), os.path.splitext(path)[1][1:].lower(), int(samples.labels[index])


def write_split(out: Path, split: str, samples: Iterator[tuple[bytes, str, int]], per_shard: int) -> int:
    """`samples` written as OUT/<split>-NNNNNN.tar, per_shard to a tar; how many tars."""
    from cvrun.data.shards import webdataset_package

    written: list[str] = []
    with webdataset_package().ShardWriter(str(out / f"{split}-%06d.tar"), maxcount=per_shard, verbose=0, mtime=0,
                                post=written.append) as writer:
        for key, (data, extension, label) in enumerate(samples):
            writer.write({"__key__": f"{key:08d}", extension: data, "cls": label})
    return len(written)


def shard_pattern(out: Path, split: str, count: int) -> str:
    last = f"{count - 1:06d}"
    return str(out / (f"{split}-{last}.tar" if count == 1 else f"{split}-{{000000..{last}}}.tar"))


def shard(src: Path, out: Path, per_shard: int, seed: int, overrides: list[str]) -> int:
    import numpy as np

    from cvrun.data.shards import webdataset_package
    from cvrun.data.sources import load_source

    webdataset_package()  # before anything is written
    if per_shard < 1:
        raise UserError(f"--per-shard {per_shard}: a shard holds at least one image")
    if out.is_file() or (out.is_dir() and any(out.glob("*.tar"))):
        raise UserError(f"{out} {'is a file' if out.is_file() else 'holds tar files already'}; name a new or empty "
                        "folder for the shards")
    source = load_source(source_config(src, overrides))
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in source.class_names))
    rng = np.random.default_rng(seed)
    for split, samples in (("train", source.train), ("val", source.val), ("test", source.test)):
        if samples is None or not len(samples):
            continue
        count = write_split(out, split, encoded(samples, rng.permutation(len(samples))), per_shard)
        print(f"{split}: {len(samples)} images in {count} shard{'s' if count > 1 else ''}: "
              f"'{SPLIT_KEYS[split]}={shard_pattern(out, split, count)}'")
    print(f"classes: {len(source.class_names)} in {out / 'classes.txt'}")
    return 0


def run_app() -> int:
    parser = OneLineParser(prog="cvrun shard", description="Write an image-folder tree or a CSV/TSV labels file's "
                                                             "images as tar shards for dataset=shards.")
    parser.add_argument("src", type=Path, help="an image-folder tree or a CSV/TSV labels file")
    parser.add_argument("out", type=Path, help="the folder the tar shards are written to")
    parser.add_argument("--per-shard", type=int, default=10000, help="images in each tar (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="the shuffle of each split across its shards")
    parser.add_argument("overrides", nargs="*", metavar="dataset.KEY=VALUE", help="the source's keys (dataset=csv's "
                        "label_column, ...)")
    return run_parsed(parser, lambda args: shard(args.src, args.out, args.per_shard, args.seed, args.overrides))
