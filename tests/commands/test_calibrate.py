"""`cvrun calibrate`: a temperature fitted on the validation split of an over-confident model, and eval, inspect,
predict and export using it while the run's best.pt is the one it was fitted for."""

import csv
import dataclasses
import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cvrun.io import load_checkpoint, save_checkpoint
from tests.conftest import cli


def scale_last_layer(best: Path, factor: float) -> None:
    """Multiply the output layer's weights and bias in best.pt: the same top-1, `factor` times the logits."""
    state = load_checkpoint(best)
    weights = state["ema"] if state.get("ema") else state["model"]
    last = [name for name, value in weights.items() if value.dim() == 2][-1].rsplit(".", 1)[0]
    for name in (f"{last}.weight", f"{last}.bias"):
        weights[name] = weights[name] * factor
    save_checkpoint(best, state)


@pytest.fixture(scope="module")
def overconfident(source_run, tmp_path_factory) -> Path:
    """The suite's LeNet-5 shapes run (three classes, a validation split of 60 images) made over-confident: its
    output layer scaled by 10."""
    path = shutil.copytree(source_run, tmp_path_factory.mktemp("calibrate") / "run")
    scale_last_layer(path / "checkpoints" / "best.pt", 10.0)
    return path


@pytest.fixture
def run(overconfident, tmp_path) -> Path:
    return shutil.copytree(overconfident, tmp_path / "run")


def eval_figures(stdout: str) -> dict[str, float]:
    figures = {"top1": float(re.search(r"test: top-1 ([\d.]+)%", stdout).group(1))}
    calibrated = re.search(r"NLL ([\d.]+) -> ([\d.]+)  ECE ([\d.]+)% -> ([\d.]+)%", stdout)
    if calibrated:
        figures.update(zip(("nll", "calibrated_nll", "ece", "calibrated_ece"), map(float, calibrated.groups())))
    return figures


def validation_logits(run: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from cvrun.commands.eval import load_run
    from cvrun.data.loaders import make_loader
    from cvrun.data.splits import build_splits
    from cvrun.engine.evaluate import Normalize, predict
    from cvrun.models.pretrained import rebuild_model

    cfg, state = load_run(run)
    loader = make_loader(build_splits(cfg.dataset).val, cfg.dataset.image_size, 100, train=False, seed=0,
                         num_workers=0)
    return predict(rebuild_model(cfg, state), loader, Normalize(cfg.dataset.mean, cfg.dataset.std,
                                                                 torch.device("cpu")))


def test_the_temperature_of_an_overconfident_model_is_above_one_and_fitted_on_the_val_split_only(run, monkeypatch):
    """T > 1 minimises the validation NLL (checked at T +- 5%); NLL and ECE fall on val and on the test split, top-1
    stays; the test split is never read by calibrate (build_splits hands it one that fails when touched)."""
    import cvrun.data.splits as splits

    before = cli("eval", str(run), "progress=false", cwd=run.parent)
    assert before.returncode == 0 and "calibrated" not in before.stdout, before.stderr
    build_splits = splits.build_splits

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"calibrate read the test split ({name})")

        def __len__(self):
            raise AssertionError("calibrate read the test split (len)")

    monkeypatch.setattr(splits, "build_splits", lambda cfg: dataclasses.replace(build_splits(cfg), test=Untouchable()))
    result = cli("calibrate", str(run), cwd=run.parent)
    monkeypatch.undo()
    assert result.returncode == 0, result.stderr
    stored = json.loads((run / "calibration.json").read_text())
    assert stored["temperature"] > 1 and stored["split"] == "val" and stored["images"] == 60
    assert stored["val_nll_after"] < stored["val_nll_before"] and stored["val_ece_after"] < stored["val_ece_before"]
    logits, labels = validation_logits(run)
    nll = {t: torch.nn.functional.cross_entropy(logits.double() / t, labels).item()
           for t in (stored["temperature"] / 1.05, stored["temperature"], stored["temperature"] * 1.05)}
    assert min(nll, key=nll.get) == stored["temperature"]
    assert abs(nll[stored["temperature"]] - stored["val_nll_after"]) < 1e-5
    assert f"temperature {stored['temperature']:.4f} fitted on the validation split (60 images" in result.stdout
    after = cli("eval", str(run), "progress=false", cwd=run.parent)
    assert after.returncode == 0 and after.stderr == "", after.stderr
    raw, calibrated = eval_figures(before.stdout), eval_figures(after.stdout)
    assert calibrated["top1"] == raw["top1"] and after.stdout.splitlines()[0] == before.stdout.splitlines()[0]
    assert calibrated["calibrated_nll"] < calibrated["nll"] and calibrated["calibrated_ece"] < calibrated["ece"]
    on_val = cli("eval", str(run), "split=val", "progress=false", cwd=run.parent)  # eval's sums, calibrate's figures
    assert (f"NLL {stored['val_nll_before']:.4f} -> {stored['val_nll_after']:.4f}  ECE {stored['val_ece_before']:.2f}% "
            f"-> {stored['val_ece_after']:.2f}%") in on_val.stdout, on_val.stdout


def test_predict_export_and_inspect_use_the_temperature(run, tmp_path):
    """predict's probabilities are softmax(logits / T) of the PyTorch model, in a run folder and in its exported
    model.onnx alike (the graph divides by T); inspect draws the reliability diagram before and after."""
    import onnxruntime

    from cvrun.commands.eval import load_run
    from cvrun.data.splits import build_splits
    from cvrun.engine.evaluate import Normalize
    from cvrun.models.pretrained import rebuild_model

    assert cli("calibrate", str(run), cwd=tmp_path).returncode == 0
    temperature = json.loads((run / "calibration.json").read_text())["temperature"]
    cfg, state = load_run(run)
    test = build_splits(cfg.dataset).test
    images = np.stack([test.image(i, cfg.dataset.image_size) for i in range(40)])
    (tmp_path / "images").mkdir()
    for i, image in enumerate(images):
        cv2.imwrite(str(tmp_path / "images" / f"{i:02d}.png"), image[:, :, ::-1])
    normalized = Normalize(cfg.dataset.mean, cfg.dataset.std, torch.device("cpu"))(
        torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
    with torch.no_grad():
        logits = rebuild_model(cfg, state).eval()(normalized)
    expected = (logits / temperature).softmax(1).max(1).values.numpy()
    assert expected.mean() < logits.softmax(1).max(1).values.mean().item() - 0.02  # T > 1 lowers the confidence

    exported = cli("export", str(run), "--dynamic-batch", cwd=tmp_path)
    assert exported.returncode == 0 and "top-1 equal on 120/120" in exported.stdout, exported.stderr
    assert f"divides its logits by the temperature {temperature:.4f}" in exported.stdout
    onnx_file = run / "export" / "model.onnx"
    assert json.loads((run / "export" / "model.onnx.json").read_text())["temperature"] == temperature
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    graph_probs = torch.from_numpy(session.run(None, {"images": normalized.numpy()})[0]).softmax(1).max(1).values
    assert np.allclose(graph_probs.numpy(), expected, atol=1e-5)
    for source, name in ((run, "run.csv"), (onnx_file, "onnx.csv")):
        result = cli("predict", str(source), "images", "--top-k", "1", "--out", name, cwd=tmp_path)
        assert result.returncode == 0 and f"calibrated with temperature {temperature:.4f}" in result.stdout
        with open(tmp_path / name, newline="") as handle:
            probs = [float(row["top1_prob"]) for row in csv.DictReader(handle)]
        assert np.allclose(probs, expected, atol=2e-5), name

    inspected = cli("inspect", str(run), "embedding_images=50", cwd=tmp_path)
    assert inspected.returncode == 0, inspected.stderr
    before, after = map(float, re.search(r"ECE ([\d.]+)% -> ([\d.]+)%", inspected.stdout).groups())
    assert after < before
    page = (run / "inspect_test" / "report.html").read_text()
    assert f"with the temperature {temperature:.4f} fitted on the validation split" in page
    width = cv2.imread(str(run / "inspect_test" / "calibration.png")).shape[1]
    assert width > 1.8 * cv2.imread(str(run / "inspect_test" / "calibration.png")).shape[0]  # two diagrams


def test_a_calibration_for_another_best_pt_is_ignored_with_one_warning_until_refitted(run, tmp_path):
    """Training on since (here: best.pt rewritten) makes calibration.json stale: eval and predict warn once and
    give the model's own probabilities; calibrating again replaces it."""
    assert cli("calibrate", str(run), cwd=tmp_path).returncode == 0
    scale_last_layer(run / "checkpoints" / "best.pt", 0.5)
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "one.png"), np.full((32, 32, 3), 120, np.uint8))
    evaluated = cli("eval", str(run), "progress=false", cwd=tmp_path)
    predicted = cli("predict", str(run), "images", "--out", "p.csv", cwd=tmp_path)
    for result in (evaluated, predicted):
        assert result.returncode == 0 and "calibrated" not in result.stdout
        assert result.stderr.count("\n") == 1 and "cvrun: warning: " in result.stderr, result.stderr
        assert "was fitted for another checkpoints/best.pt" in result.stderr and "cvrun calibrate" in result.stderr
    refitted = cli("calibrate", str(run), cwd=tmp_path)
    assert refitted.returncode == 0, refitted.stderr
    again = cli("eval", str(run), "progress=false", cwd=tmp_path)
    assert again.stderr == "" and "test calibrated (temperature" in again.stdout


def test_a_run_without_a_validation_split_is_refused_in_one_line(run, tmp_path):
    config = run / "config.yaml"
    config.write_text(re.sub(r"val_fraction: [\d.]+", "val_fraction: 0.0", config.read_text()))
    result = cli("calibrate", str(run), cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "has no validation split" in result.stderr and "dataset.val_fraction=0.1" in result.stderr
    assert not (run / "calibration.json").exists()
