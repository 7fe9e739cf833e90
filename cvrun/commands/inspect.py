"""`cvrun inspect RUN_DIR [split=test|val] [dataset.root=DIR] [embedding_images=N]`: look inside a run's best checkpoint.

Scores the split once (class probabilities and backbone features of every image) and writes
RUN_DIR/inspect_<split>/: per_class.csv, confusion.csv/png, mistakes.png, cam.png, calibration.png,
embedding.png, filters.png, class_means.png and report.html, a self-contained page with all of them.
A run calibrated by `cvrun calibrate` shows its probabilities after the temperature (the mistakes' confidence
too), and its ECE and reliability diagram before and after.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from cvrun.commands import OneLineParser, run_parsed
from cvrun.errors import UserError

SETTINGS = ("split", "embedding_images")  # and dataset.<path key>=, where the data has moved
MISTAKES_SHOWN = 18
CAM_CLASSES = 10
EMBEDDED_IMAGES = 2000
MEAN_IMAGES_PER_CLASS = 1000


def parse_settings(items: list[str]) -> dict[str, str]:
    settings: dict[str, Any] = {"split": "test", "embedding_images": EMBEDDED_IMAGES, "moved": {}}
    for item in items:
        key, sep, value = item.partition("=")
        if sep and key.startswith("dataset."):
            settings["moved"][key] = value  # where the run's data is now
        elif not sep or key not in SETTINGS:
            raise UserError(f"{item} is not a setting of cvrun inspect; use split=test|val, dataset.root=DIR or "
                            "embedding_images=N")
        else:
            settings[key] = value
    if settings["split"] not in ("test", "val"):
        raise UserError(f"split={settings['split']} is not a split; use split=test or split=val")
    count = str(settings["embedding_images"])
    if not count.isdigit() or int(count) < 10:
        raise UserError(f"embedding_images={count} is not a count t-SNE can use; use 10 or more (default 2000; "
                        "t-SNE takes about 10 s for 2,000 images on 2 cores)")
    settings["embedding_images"] = int(count)
    return settings


def score_split(model: Any, samples: Any, cfg: Any, device: Any) -> tuple[Any, Any, Any]:
    """Labels, logits and backbone features of every image of the split, in its order."""
    import torch
    from tqdm import tqdm

    from cvrun.data.loaders import make_loader
    from cvrun.engine.evaluate import Normalize

    normalize = Normalize(list(cfg.dataset.mean), list(cfg.dataset.std), device)
    loader = make_loader(samples, cfg.dataset.image_size, 2 * cfg.trainer.batch_size, train=False,
                         seed=cfg.trainer.seed, num_workers=cfg.trainer.num_workers, cuda=device.type == "cuda")
    labels, logits, features = [], [], []
    model.to(device).eval()
    with torch.inference_mode():
        for images, batch_labels in tqdm(loader, desc="inspect", unit="batch", disable=None, file=sys.stderr):
            batch_features = model.backbone(normalize(images))
            logits.append(model.head(batch_features).float().cpu())
            features.append(batch_features.float().cpu())
            labels.append(batch_labels)
    return torch.cat(labels).numpy(), torch.cat(logits), torch.cat(features).numpy()


def mistakes_figure(predictions: Any, samples: Any, size: int, path: Path) -> int:
    """The most confident mistakes; returns how many the split has."""
    from cvrun.report.inspect import plot_image_grid

    wrong = (predictions.predicted != predictions.labels).nonzero()[0]
    shown = wrong[(-predictions.confidence[wrong]).argsort()[:MISTAKES_SHOWN]]
    names = predictions.class_names
    titles = [f"true {names[predictions.labels[i]]}\npredicted {names[predictions.predicted[i]]} "
              f"{100 * predictions.confidence[i]:.0f}%" for i in shown]
    plot_image_grid([samples.image(int(i), size) for i in shown], titles, path,
                    title=f"the most confident of {len(wrong)} mistakes")
    return len(wrong)


def cam_figure(model: Any, predictions: Any, samples: Any, cfg: Any, path: Path) -> str | None:
    """Grad-CAM overlays of the predicted class: per class (the first ten) its two most confident correct
    images and its most confident mistake. None when drawn; else why not."""
    import cv2
    import numpy as np
    import torch

    from cvrun.engine.evaluate import Normalize
    from cvrun.models.cam import grad_cam, last_conv
    from cvrun.report.inspect import plot_image_grid

    if last_conv(model) is None:
        return "the model has no convolutional layer, so no Grad-CAM"
    chosen = []
    for c in range(min(CAM_CLASSES, len(predictions.class_names))):
        ours = (predictions.labels == c).nonzero()[0]
        ours = ours[(-predictions.confidence[ours]).argsort()]
        right = ours[predictions.predicted[ours] == c][:2]
        wrong = ours[predictions.predicted[ours] != c][:1]
        chosen += [int(i) for i in (*right, *wrong)]
    size = cfg.dataset.image_size
    images = [samples.image(i, size) for i in chosen]
    batch = torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy())
    normalize = Normalize(list(cfg.dataset.mean), list(cfg.dataset.std), torch.device("cpu"))
    maps = grad_cam(model.cpu(), normalize(batch), torch.as_tensor(predictions.predicted[chosen]))
    overlays = []
    for image, heat in zip(images, maps.numpy()):
        colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
        overlays.append((0.55 * image + 0.45 * colour).astype(np.uint8))
    names = predictions.class_names
    titles = [f"{names[predictions.labels[i]]} -> {names[predictions.predicted[i]]}" +
              (" (wrong)" if predictions.labels[i] != predictions.predicted[i] else "") for i in chosen]
    plot_image_grid(overlays, titles, path, columns=6, title="Grad-CAM of the predicted class (last conv layer)")
    return None


def filters_figure(model: Any, class_names: list[str], image_size: int, path: Path) -> str:
    """The first layer's weights as images: a conv layer's filters, or a fully connected layer's rows over
    the pixels (model=linear: one template per class). Returns what it shows."""
    from torch import nn

    from cvrun.report.inspect import plot_image_grid, to_displayable

    first = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    weights = first.weight.detach().float().cpu().numpy()
    if isinstance(first, nn.Conv2d):
        shown = [to_displayable(w) for w in weights[:64]] if weights.shape[1] == 3 else []
        titles = [f"filter {i}" for i in range(len(shown))]
        what = f"the first conv layer's {len(weights)} filters ({weights.shape[2]}x{weights.shape[3]})"
    else:
        rows = weights.reshape(len(weights), 3, image_size, image_size)[:64]
        is_output = first.out_features == len(class_names)
        shown = [to_displayable(row) for row in rows]
        titles = list(class_names) if is_output else [f"unit {i}" for i in range(len(shown))]
        what = ("each class's weights over the pixels (its template)" if is_output
                else f"the first fully connected layer's rows over the pixels ({len(weights)} units)")
    if shown:
        plot_image_grid(shown, titles, path, columns=8, title=what)
    return what


def class_means_figure(train: Any, class_names: list[str], size: int, path: Path) -> None:
    """The mean training image of each class (up to 1,000 images each): the dataset's bias, per class."""
    import numpy as np

    from cvrun.report.inspect import plot_image_grid

    means, titles = [], []
    for c, name in enumerate(class_names):
        indices = (train.labels == c).nonzero()[0][:MEAN_IMAGES_PER_CLASS]
        total = np.zeros((size, size, 3), np.float64)
        for i in indices:
            total += train.image(int(i), size)
        means.append((total / max(len(indices), 1)).astype(np.uint8))
        titles.append(f"{name} ({len(indices)})")
    plot_image_grid(means, titles, path, columns=min(10, len(means)), title="mean training image per class")


def load_split(run_dir: Path, settings: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """The run's config and best weights, its data (dataset.root= where it moved) and the split's samples."""
    from cvrun.commands.eval import load_run, move_data
    from cvrun.data.splits import build_splits
    from cvrun.models.pretrained import rebuild_model

    cfg, state = load_run(run_dir)
    move_data(cfg, settings["moved"])
    data = build_splits(cfg.dataset)
    if data.class_names != list(state["class_names"]):
        raise UserError(f"the data of {run_dir} now has classes {data.class_names}, but its checkpoint "
                        f"was trained on {state['class_names']}")
    samples = data.test if settings["split"] == "test" else data.val
    if samples is None or not len(samples):
        raise UserError(f"{run_dir} has no {settings['split']} split (dataset.val_fraction=0?); use split=test")
    return cfg, rebuild_model(cfg, state), data, samples


def calibration_figure(raw: Any, predictions: Any, calibration: Any, path: Path) -> tuple[str, list]:
    """calibration.png: the reliability diagram of the model's probabilities, and beside it the calibrated one
    where the run has a calibration. Returns the ECE as the report states it, and the panels (title, ECE, bins)."""
    from cvrun.report import inspect as report

    panels = [("before calibration" if calibration else "calibration", *report.expected_calibration_error(raw))]
    if calibration is not None:
        panels.append((f"after (T = {calibration.temperature:.3f})", *report.expected_calibration_error(predictions)))
    report.plot_calibration(panels, path)
    stated = f"{panels[0][1]:.2f}% ({report.ECE_BINS} bins)"
    if calibration is not None:
        stated += (f"; {panels[1][1]:.2f}% with the temperature {calibration.temperature:.4f} fitted on the "
                   f"validation split (calibration.json)")
    return stated, panels


def write_tables(predictions: Any, confusion: Any, out: Path) -> list[dict]:
    """per_class.csv (percentages to two decimals) and confusion.csv; returns the per-class rows."""
    from cvrun.io import atomic_write_bytes
    from cvrun.report import inspect as report
    from cvrun.report.table import to_csv

    rows = report.per_class_rows(predictions)
    columns = ["class", "support", "acc1", "precision", "recall", "f1", "acc5"]
    rounded = [{k: f"{v:.2f}" if isinstance(v, float) else v for k, v in row.items()} for row in rows]
    atomic_write_bytes(out / "per_class.csv", to_csv(rounded, columns).encode())
    names = predictions.class_names
    counts = [{"class": name, **dict(zip(names, map(int, row)))} for name, row in zip(names, confusion)]
    atomic_write_bytes(out / "confusion.csv", to_csv(counts, ["class", *names]).encode())
    return rows


def write_page(run_dir: Path, out: Path, facts: list[tuple[str, str]], rows: list[dict],
               pairs: list[dict], notes: dict[str, str]) -> None:
    """report.html: the key figures, the tables and every picture, embedded."""
    from cvrun.report import html as page

    def figure(path: Path) -> str:
        return page.html_image(path) if path.exists() else "<p>not drawn</p>"

    sections = [("Key figures", page.html_table([{"": k, "value": v} for k, v in facts])),
                ("Per class", page.html_table(rows)),
                ("Most confused pairs", page.html_table(pairs)),
                ("Confusion matrix", figure(out / "confusion.png")),
                ("Most confident mistakes", figure(out / "mistakes.png")),
                ("Grad-CAM", notes.get("cam") or figure(out / "cam.png")),
                ("Calibration", figure(out / "calibration.png")),
                ("Embedding", figure(out / "embedding.png")),
                ("First layer", f"<p>{notes['filters']}</p>" + figure(out / "filters.png")),
                ("Class means", figure(out / "class_means.png")),
                ("Training curves", figure(run_dir / "curves.png"))]
    page.write_report(out / "report.html", f"cvrun inspect: {run_dir.name} ({out.name[len('inspect_'):]})", sections)


def inspect(run_dir: Path, settings: dict[str, Any]) -> int:
    import numpy as np

    from cvrun.commands.eval import usable_calibration
    from cvrun.engine.runtime import select_device
    from cvrun.report import inspect as report
    from cvrun.report.table import read_json

    cfg, model, data, samples = load_split(run_dir, settings)
    names, size, split = data.class_names, cfg.dataset.image_size, settings["split"]
    labels, logits, features = score_split(model, samples, cfg, select_device(cfg.trainer.device))
    calibration = usable_calibration(run_dir)
    raw = report.Predictions(labels, logits.softmax(dim=1).numpy(), names)
    # With a calibration every probability shown (mistakes' confidence too) is the calibrated one; top-1 is the same.
    predictions = raw if calibration is None else report.Predictions(
        labels, (logits / calibration.temperature).softmax(dim=1).numpy(), names)
    out = run_dir / f"inspect_{split}"
    out.mkdir(exist_ok=True)

    confusion = predictions.confusion()
    rows = write_tables(predictions, confusion, out)
    pairs = report.confused_pairs(confusion, names)
    report.plot_confusion(confusion, names, out / "confusion.png")
    ece, panels = calibration_figure(raw, predictions, calibration, out / "calibration.png")
    mistakes = mistakes_figure(predictions, samples, size, out / "mistakes.png")
    no_cam = cam_figure(model, predictions, samples, cfg, out / "cam.png")
    embedded = np.random.default_rng(cfg.trainer.seed).permutation(len(labels))[:settings["embedding_images"]]
    report.plot_embedding(features[embedded], labels[embedded], names, out / "embedding.png", cfg.trainer.seed)
    filters = filters_figure(model, names, size, out / "filters.png")
    class_means_figure(data.train, names, size, out / "class_means.png")

    acc1 = 100 * float((predictions.predicted == labels).mean())
    facts = [("run", str(run_dir)), ("model", cfg.model.name), ("regime", cfg.regime.name),
             ("split", f"{split}, {len(labels)} images, {len(names)} classes"), ("top-1", f"{acc1:.2f}%"),
             ("mistakes", str(mistakes)), ("expected calibration error", ece),
             ("best epoch", str(read_json(run_dir / "summary.json").get("best_epoch")))]
    write_page(run_dir, out, facts, rows, pairs, {"cam": no_cam, "filters": filters})
    print(f"{split}: top-1 {acc1:.2f}%  macro F1 {rows[-2]['f1']:.2f}%  "
          f"ECE {' -> '.join(f'{panel[1]:.2f}%' for panel in panels)}  ({len(labels)} images)")
    for pair in pairs[:5]:
        print(f"  {pair['true']} -> {pair['predicted']}: {pair['images']} images ({pair['share']:.1f}% of {pair['true']})")
    print(out)
    return 0


def run_app() -> int:
    parser = OneLineParser(prog="cvrun inspect", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished run folder")
    parser.add_argument("settings", nargs="*", help="split=test|val, dataset.root=DIR, embedding_images=N")
    return run_parsed(parser, lambda args: inspect(args.run_dir, parse_settings(args.settings)))
