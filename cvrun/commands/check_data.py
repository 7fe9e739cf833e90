"""`cvrun check-data [dataset=...]`: what a dataset holds before anything trains on it.

For the splits a run would use (train, val, test, the unlabeled pool; build_splits with the same dataset keys):
image counts per split and class, the files that cannot be read, image sizes and aspect ratios, exact duplicates
(the same file bytes, a tar shard image's bytes, or the same pixels for sources held as arrays) and near duplicates
(64-bit perceptual hashes at most `near_threshold` bits apart; cvrun/data/duplicates.py) within each split and
across every two. The report
goes to the console and, with pairs.png (the closest cross-split pairs), into `out`, never into the data.

Exit status 1 when test images are exact copies of images trained on (train or the unlabeled pool): the test score
would count images the model has seen. Near duplicates are reported; with fail_on_near=true they fail it too.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from cvrun.commands import run_hydra
from cvrun.errors import UserError

log = logging.getLogger("cvrun")

# The order of the splits; a pair of splits is searched from the later one (the held-out side) into the earlier.
SPLITS = ("train", "unlabeled", "val", "test")
TRAINED_ON = ("train", "unlabeled")  # test images copied from these make the test score count seen images
LISTED = 10  # names shown on the console per finding (the JSON has them all)
ASPECT_EDGES = (0.0, 0.5, 0.67, 0.8, 0.95, 1.05, 1.25, 1.5, 2.0, np.inf)  # width / height
SIDE_EDGES = (0, 32, 64, 128, 256, 512, 1024, np.inf)  # the shorter side, in pixels
BAR = 40  # characters of the longest histogram bar


def data_folders(dataset: Any) -> list[Path]:
    """The folders a dataset config reads (its path keys but the cache's; a file's folder), resolved."""
    from cvrun.config import is_path, option_schema

    folders = []
    for f in fields(option_schema("dataset", dataset.name)):
        value = dataset.get(f.name)
        if is_path(f) and f.name != "cache_dir" and value:
            path = Path(str(value)).expanduser()
            folders.append((path if path.is_dir() else path.parent).resolve())
    return folders


def report_folder(cfg: Any) -> Path:
    """`out`, or outputs/check_data/<dataset>_<date>_<time>/ (claimed once); a UserError inside the data."""
    from cvrun.paths import launch_path

    wanted = launch_path(cfg.out or f"outputs/check_data/{cfg.dataset.name}_{datetime.now():%Y-%m-%d_%H-%M-%S}")
    for folder in data_folders(cfg.dataset):
        if wanted.resolve().is_relative_to(folder):
            raise UserError(f"out={wanted} is inside the data ({folder}); check-data never writes there: name a folder "
                            "outside it (out=DIR), or start cvrun elsewhere")
    return wanted


def check_job(cfg: Any) -> None:
    """Before anything is read: the report's folder is outside the data."""
    report_folder(cfg)


def split_facts(name: str, samples: Any, dataset: Any) -> Any:
    """What the check needs of each image of a split: from its files' bytes; from the encoded bytes of images held
    encoded (a tar shard's, whose `encoded(index)` gives them); else from the decoded pixels."""
    from cvrun.data.duplicates import array_facts, cached_file_facts, encoded_facts, file_facts

    log.info("reading the %s split's %d images", name, len(samples))
    if samples.paths is not None:
        if dataset.cache == "disk":
            from cvrun.data.cache import default_cache_dir

            folder = Path(dataset.cache_dir) if dataset.cache_dir else default_cache_dir()
            return cached_file_facts(samples.paths, folder, f"{dataset.name}-{name}")
        return file_facts(samples.paths)
    if hasattr(samples.images, "encoded"):
        return encoded_facts(len(samples), samples.images.encoded)
    return array_facts(samples.images)


def histogram(values: np.ndarray, edges: tuple, labels: list[str]) -> dict[str, int]:
    counts = np.histogram(values, bins=np.asarray(edges, dtype=float))[0] if len(values) else np.zeros(len(labels))
    return {label: int(count) for label, count in zip(labels, counts)}


def range_labels(edges: tuple, digits: int) -> list[str]:
    def name(value: float) -> str:
        return "inf" if value == np.inf else f"{value:.{digits}f}"
    return [f"{name(low)}-{name(high)}" for low, high in zip(edges[:-1], edges[1:])]


def size_summary(facts: dict[str, Any]) -> dict[str, Any]:
    """The sizes of the readable images of all splits: the commonest, and histograms of the shorter side and the
    aspect ratio (width / height)."""
    heights = np.concatenate([f.heights[f.readable] for f in facts.values()])
    widths = np.concatenate([f.widths[f.readable] for f in facts.values()])
    shapes, counts = np.unique(np.stack([heights, widths], axis=1), axis=0, return_counts=True)
    commonest = {f"{h}x{w}": int(c) for (h, w), c in sorted(zip(shapes.tolist(), counts), key=lambda x: -x[1])[:5]}
    side_labels = [f"{low}-{high - 1}" if high != np.inf else f">={low}"
                   for low, high in zip(SIDE_EDGES, SIDE_EDGES[1:])]
    return {"commonest (height x width)": commonest,
            "shorter side (px)": histogram(np.minimum(heights, widths), SIDE_EDGES, side_labels),
            "aspect (width / height)": histogram(widths / np.maximum(heights, 1), ASPECT_EDGES,
                                                 range_labels(ASPECT_EDGES, 2))}


@dataclass
class Matches:
    """For each query image: the index of an exact copy among the reference images (-1: none), and the nearest
    reference image by perceptual hash with its distance in bits (-1 and NO_MATCH where there is none)."""

    exact: np.ndarray
    distances: np.ndarray
    nearest: np.ndarray

    def near(self, threshold: int) -> np.ndarray:
        """Near duplicates: within `threshold` bits, exact copies aside."""
        return (self.distances <= threshold) & (self.exact < 0)


def find_matches(query: Any, reference: Any, same: bool) -> Matches:
    """`query`'s images among `reference`'s (ImageFacts); `same`: one split searched within itself."""
    from cvrun.data.duplicates import NO_MATCH, exact_groups, exact_matches, nearest

    if same:
        exact = np.full(len(query), -1, dtype=np.int64)
        for group in exact_groups(query.digests):
            exact[group] = np.roll(group, -1)  # each image to another of its group
    else:
        exact = exact_matches(query.digests, reference.digests)
    distances = np.full(len(query), NO_MATCH, dtype=np.uint8)
    indices = np.full(len(query), -1, dtype=np.int64)
    asked = np.flatnonzero(query.readable)  # an unreadable file has no hash
    kept = asked if same else np.flatnonzero(reference.readable)
    found, where = nearest(query.hashes[asked], reference.hashes[kept], same=same)
    distances[asked] = found
    indices[asked] = np.where(where >= 0, kept[np.maximum(where, 0)], -1)
    return Matches(exact, distances, indices)


def named(samples: Any, index: int, class_names: list[str]) -> dict[str, str]:
    label = int(samples.true_labels[index])
    return {"id": str(samples.ids[index]), "label": class_names[label] if label >= 0 else "(unlabeled)"}


def pair(query: Any, i: int, reference: Any, j: int, distance: int | None, class_names: list[str]) -> dict[str, Any]:
    image, match = named(query, i, class_names), named(reference, j, class_names)
    return {"image": image["id"], "label": image["label"], "match": match["id"], "match_label": match["label"],
            "distance": distance}


def within_split(samples: Any, facts: Any, found: Matches, threshold: int, class_names: list[str]) -> dict[str, Any]:
    """Exact copies (groups of byte-identical images; those whose labels disagree) and near duplicates (each pair
    once) inside one split."""
    from cvrun.data.duplicates import exact_groups
    from cvrun.data.samples import HIDDEN

    groups = exact_groups(facts.digests)
    near = found.near(threshold)
    pairs = [pair(samples, i, samples, int(found.nearest[i]), int(found.distances[i]), class_names)
             for i in np.flatnonzero(near) if not (found.nearest[found.nearest[i]] == i and found.nearest[i] < i)]
    return {"exact_groups": len(groups), "exact_images": int(sum(len(g) for g in groups)),
            "conflicting_labels": sum(len(set(samples.true_labels[g].tolist()) - {HIDDEN}) > 1 for g in groups),
            "near_images": int(near.sum()),
            "exact": [[named(samples, int(i), class_names) for i in group] for group in groups],
            "near": pairs}


def across_splits(query: Any, reference: Any, found: Matches, threshold: int,
                  class_names: list[str]) -> dict[str, Any]:
    """The query split's images that have an exact copy or a near duplicate in the reference split, and how many
    query images have their nearest reference image at each distance."""
    from cvrun.data.duplicates import HASH_BITS

    near = found.near(threshold)
    distances = np.bincount(found.distances[found.nearest >= 0], minlength=HASH_BITS + 1)
    return {"images": len(query), "exact_images": int((found.exact >= 0).sum()), "near_images": int(near.sum()),
            "nearest_distances": {str(d): int(n) for d, n in enumerate(distances) if n},
            "exact": [pair(query, int(i), reference, int(found.exact[i]), None, class_names)
                      for i in np.flatnonzero(found.exact >= 0)],
            "near": [pair(query, int(i), reference, int(found.nearest[i]), int(found.distances[i]), class_names)
                     for i in np.flatnonzero(near)]}


def search(splits: dict[str, Any], facts: dict[str, Any], threshold: int,
           class_names: list[str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Matches]]:
    """Every split within itself, and every two splits (the later of SPLITS searched in the earlier)."""
    within, across, found = {}, {}, {}
    names = [name for name in SPLITS if name in splits]
    for position, name in enumerate(names):
        itself = find_matches(facts[name], facts[name], same=True)
        within[name] = within_split(splits[name], facts[name], itself, threshold, class_names)
        for reference in names[:position]:
            key = f"{name}~{reference}"
            found[key] = find_matches(facts[name], facts[reference], same=False)
            across[key] = across_splits(splits[name], splits[reference], found[key], threshold, class_names)
    return within, across, found


def leaks(across: dict[str, Any], fail_on_near: bool) -> list[dict[str, Any]]:
    """The pairs that fail the check: test images copied (or, with fail_on_near, nearly) from data trained on."""
    failing = []
    for reference in TRAINED_ON:
        entry = across.get(f"test~{reference}")
        if entry is not None:
            failing += entry["exact"] + (entry["near"] if fail_on_near else [])
    return failing


def bars(counts: dict[str, int], indent: str = "    ") -> list[str]:
    """A text histogram: the non-empty bins, each with its count and a bar."""
    top = max(counts.values(), default=0)
    width = max((len(label) for label in counts), default=0)
    return [f"{indent}{label:>{width}}  {count:>9,}  {'#' * max(1, round(BAR * count / top))}"
            for label, count in counts.items() if count]


def class_table(record: dict[str, Any], class_names: list[str]) -> list[str]:
    """Images per class (rows) and split (columns); above 30 classes, each split's smallest and largest."""
    names = list(record)
    if len(class_names) > 30:
        lines = []
        for name in names:
            per_class = {c: n for c, n in record[name]["per_class"].items() if c in class_names}
            low, high = min(per_class, key=per_class.get), max(per_class, key=per_class.get)
            lines.append(f"  {name:<10} {record[name]['images']:>9,} images; per class {per_class[low]:,} ({low}) "
                         f"to {per_class[high]:,} ({high})")
        return lines
    rows = [*class_names] + (["(unlabeled)"] if any("(unlabeled)" in r["per_class"] for r in record.values()) else [])
    width = max(len(row) for row in [*rows, "total"])
    lines = [f"  {'class':<{width}}" + "".join(f"{name:>11}" for name in names)]
    for row in rows:
        lines.append(f"  {row:<{width}}" + "".join(f"{record[name]['per_class'].get(row, 0):>11,}" for name in names))
    lines.append(f"  {'total':<{width}}" + "".join(f"{record[name]['images']:>11,}" for name in names))
    return lines


def listed(pairs: list[dict[str, Any]]) -> str:
    """'test/a.png = train/b.png' (exact copies), 'test/c.png ~ train/d.png (4 bits)' (near duplicates)."""
    shown = ", ".join(f"{p['image']} = {p['match']}" if p["distance"] is None else
                      f"{p['image']} ~ {p['match']} ({p['distance']} bits)" for p in pairs[:LISTED])
    return shown + (f", ... ({len(pairs) - LISTED} more in report.json)" if len(pairs) > LISTED else "")


def text_report(report: dict[str, Any]) -> str:
    record, threshold = report["splits"], report["near_threshold"]
    lines = [f"check-data: dataset={report['dataset']['name']}"
             + (f" ({report['dataset']['root']})" if report["dataset"].get("root") else "")
             + f", {sum(r['images'] for r in record.values()):,} images, {len(report['classes'])} classes",
             "images per split and class:", *class_table(record, report["classes"])]
    unreadable = report["unreadable"]
    lines.append(f"unreadable files: {unreadable['count']}" + (
        f" ({', '.join(unreadable['files'][:LISTED])}{', ...' if unreadable['count'] > LISTED else ''})"
        if unreadable["count"] else ""))
    sizes = report["sizes"]
    lines.append("image sizes (height x width): " + ", ".join(f"{size}: {count:,}" for size, count in
                                                                  sizes["commonest (height x width)"].items()))
    for title in ("shorter side (px)", "aspect (width / height)"):
        lines += [f"  {title}:", *bars(sizes[title])]
    lines.append("exact duplicates (the same bytes; arrays: the same pixels):")
    heading = len(lines)
    for name, entry in report["within"].items():
        if entry["exact_groups"]:
            lines.append(f"  within {name}: {entry['exact_images']:,} images in {entry['exact_groups']:,} groups, "
                         f"{entry['conflicting_labels']:,} with different labels")
    for key, entry in report["across"].items():
        if entry["exact_images"]:
            query = key.split("~")[0]
            lines.append(f"  {key}: {entry['exact_images']:,} {query} image(s) copied: {listed(entry['exact'])}")
    if len(lines) == heading:
        lines.append("  none")
    lines.append(f"near duplicates (perceptual hashes at most {threshold} of 64 bits apart, exact copies aside):")
    for name, entry in report["within"].items():
        lines.append(f"  within {name}: {entry['near_images']:,} images")
    for key, entry in report["across"].items():
        query = key.split("~")[0]
        nearest = " ".join(f"{d}:{n:,}" for d, n in entry["nearest_distances"].items() if int(d) <= threshold + 4)
        lines.append(f"  {key}: {entry['near_images']:,} of {entry['images']:,} {query} images "
                     f"({100 * entry['near_images'] / max(entry['images'], 1):.2f}%); their nearest at each distance "
                     f"(bits) up to {threshold + 4}: {nearest or 'none'}")
    return "\n".join(lines)


PAIRS_PER_ROW = 4


def closest_pairs(found: dict[str, Matches], count: int) -> list[tuple[int, str, int, int]]:
    """The `count` closest cross-split pairs: (distance, split pair, query index, reference index); exact copies
    first."""
    candidates = []
    for key, matches in found.items():
        for i in np.flatnonzero((matches.exact >= 0) | (matches.nearest >= 0)):
            exact = matches.exact[i] >= 0
            candidates.append((0 if exact else int(matches.distances[i]), not exact, key, int(i),
                               int(matches.exact[i] if exact else matches.nearest[i])))
    return [(d, key, i, j) for d, _, key, i, j in sorted(candidates)[:count]]


def picture(samples: Any, index: int, cell: int) -> np.ndarray:
    """An image as a square cell (padded, shrunk to `cell` px if larger); grey where the file cannot be read."""
    import cv2

    from cvrun.data.samples import read_rgb

    try:
        image = read_rgb(str(samples.paths[index])) if samples.paths is not None else np.asarray(samples.images[index])
    except UserError:  # an encoded image that does not decode (a shard's)
        image = None
    if image is None:
        return np.full((cell, cell, 3), 128, np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        image = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=2)
    h, w = image.shape[:2]
    side = max(h, w)
    square = np.full((side, side, 3), 255, np.uint8)
    square[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = image
    return square if side <= cell else cv2.resize(square, (cell, cell), interpolation=cv2.INTER_AREA)


def caption(split: str, samples: Any, index: int, class_names: list[str], extra: str = "") -> str:
    """'test (cat)' or 'train (cat), 4 bits', then the image's name in two lines (its folder, its file)."""
    name = named(samples, index, class_names)
    folder, _, file = name["id"].rpartition("/")
    lines = (f"{split} ({name['label']}){extra}", f"{folder}/" if folder else "", file)
    return "\n".join(line for line in lines if line)


def pairs_png(pairs: list[tuple[int, str, int, int]], splits: dict[str, Any], class_names: list[str],
              cell: int = 128) -> bytes:
    """The pairs side by side, PAIRS_PER_ROW to a row: each held-out image, then its match with the distance."""
    import cv2

    from cvrun.report.grid import image_grid

    cells, captions = [], []
    for distance, key, i, j in pairs:
        query, reference = key.split("~")
        cells += [picture(splits[query], i, cell), picture(splits[reference], j, cell)]
        captions += [caption(query, splits[query], i, class_names),
                     caption(reference, splits[reference], j, class_names, f", {distance} bits")]
    blank = np.full_like(cells[0], 255)
    while len(cells) % (2 * PAIRS_PER_ROW):
        cells.append(blank)
        captions.append("")
    step = 2 * PAIRS_PER_ROW
    grid = image_grid(rows=[cells[r:r + step] for r in range(0, len(cells), step)],
                      captions=[captions[r:r + step] for r in range(0, len(captions), step)],
                      row_labels=[""] * (len(cells) // step),
                      column_labels=["held-out image", "its match"] * PAIRS_PER_ROW, cell=cell)
    return cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))[1].tobytes()


def unreadable_files(splits: dict[str, Any], facts: dict[str, Any]) -> list[str]:
    return [str(splits[name].ids[i]) for name in splits for i in np.flatnonzero(~facts[name].readable)]


def check_data(cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from cvrun.config import CheckDataConfig, absolute_root, validate
    from cvrun.data.splits import build_splits, split_record
    from cvrun.io import atomic_write_bytes, claim_folder, make_folder

    cfg = validate(cfg, CheckDataConfig)
    absolute_root(cfg.dataset)
    out = report_folder(cfg)
    started = time.perf_counter()
    data = build_splits(OmegaConf.merge(cfg.dataset, {"cache": "none"}))  # files stay files: each is read once
    splits = {name: getattr(data, name) for name in SPLITS if getattr(data, name) is not None}
    facts = {name: split_facts(name, samples, cfg.dataset) for name, samples in splits.items()}
    read = time.perf_counter()
    log.info("searching for duplicates within and across %s", ", ".join(splits))
    within, across, found = search(splits, facts, cfg.near_threshold, data.class_names)
    searched = time.perf_counter()
    failing = leaks(across, cfg.fail_on_near)
    unreadable = unreadable_files(splits, facts)
    report = {"dataset": OmegaConf.to_container(cfg.dataset), "classes": data.class_names,
              "splits": {name: split_record(samples, data.class_names) for name, samples in splits.items()},
              "unreadable": {"count": len(unreadable), "files": unreadable}, "sizes": size_summary(facts),
              "near_threshold": cfg.near_threshold, "hash": "64-bit DCT perceptual hash (pHash) of a 32x32 grey image",
              "within": within, "across": across, "exit_status": 1 if failing else 0,
              "seconds": {"read": round(read - started, 2), "search": round(searched - read, 2)}}

    if cfg.out:
        make_folder(out)
    folder = out if cfg.out else claim_folder(str(out))
    text = text_report(report)
    pairs = closest_pairs(found, cfg.pairs)
    if pairs:
        atomic_write_bytes(folder / "pairs.png", pairs_png(pairs, splits, data.class_names))
        text += f"\nclosest cross-split pairs: {folder / 'pairs.png'}"
    text += (f"\nreport: {folder / 'report.json'} (read {sum(len(s) for s in splits.values()):,} images in "
             f"{report['seconds']['read']:.1f} s, searched in {report['seconds']['search']:.1f} s)")
    atomic_write_bytes(folder / "report.json", json.dumps(report, indent=1).encode())
    atomic_write_bytes(folder / "report.txt", (text + "\n").encode())
    print(text)
    if failing:
        what = "exact copies" + (" or near duplicates" if cfg.fail_on_near else "")
        print(f"cvrun: check-data: {len(failing)} test image(s) are {what} of images trained on: "
              f"{listed(failing)}", file=sys.stderr)
        raise SystemExit(1)
    return report


def run_app() -> int:
    return run_hydra("check_data", check_data)
