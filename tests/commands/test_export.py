"""`cvrun export`: ONNX and torch.export files that agree with PyTorch on real images and carry their metadata."""

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from cvrun.engine.inference import ModelCard
from tests.conftest import SHARED_CIFAR10, cli


@pytest.fixture
def run(cifar10_run, tmp_path):
    """A copy of the CIFAR-10 run (export writes into the run folder)."""
    return shutil.copytree(cifar10_run, tmp_path / "run")


def model_and_test_images(run, count=1000):
    """The run's PyTorch model, its card, and `count` of its real test images normalised as it expects."""
    from cvrun.commands.eval import load_run
    from cvrun.commands.export import verification_images
    from cvrun.models.pretrained import rebuild_model

    cfg, state = load_run(run)
    card = ModelCard.of_run(cfg, state)
    images, what = verification_images(cfg, card)
    assert what == "1000 test images"
    return rebuild_model(cfg, state).eval(), card, images[:count]


def test_onnx_export_agrees_with_pytorch_and_predicts_without_the_run(run, tmp_path):
    import onnx
    import onnxruntime

    result = cli("export", str(run), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "onnx.checker passed; onnxruntime agrees with PyTorch on 1000 test images (top-1 equal on 1000/1000" \
        in result.stdout
    path = run / "export" / "model.onnx"
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    model, card, images = model_and_test_images(run)
    assert ModelCard.from_metadata({p.key: p.value for p in proto.metadata_props}, "model.onnx") == card
    assert json.loads((run / "export" / "model.onnx.json").read_text())["class_names"] == card.class_names
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 32, 32]  # without --dynamic-batch: batches of one
    exported = np.concatenate([session.run(None, {"images": image[None].numpy()})[0] for image in images])
    with torch.no_grad():
        reference = model(images).numpy()
    assert (exported.argmax(1) == reference.argmax(1)).all()
    assert (np.abs(exported - reference).max(1) <= 1e-4 * np.abs(reference).max(1)).all()
    listed = tmp_path / "files.txt"
    test_files = sorted((SHARED_CIFAR10 / "test" / "frog").iterdir())[:100]
    listed.write_text("\n".join(map(str, test_files)))
    with_run = cli("predict", str(run), str(listed), "--out", "a.csv", cwd=tmp_path)
    with_onnx = cli("predict", str(path), str(listed), "--out", "b.csv", cwd=tmp_path)
    assert with_run.returncode == with_onnx.returncode == 0, with_onnx.stderr
    a, b = ((tmp_path / name).read_text().splitlines() for name in ("a.csv", "b.csv"))
    for row_a, row_b in zip(a[1:], b[1:], strict=True):
        fields_a, fields_b = row_a.split(","), row_b.split(",")
        assert fields_a[:1] + fields_a[1:-1:2] == fields_b[:1] + fields_b[1:-1:2]  # the path, each class
        assert np.allclose([float(x) for x in fields_a[2:-1:2]], [float(x) for x in fields_b[2:-1:2]], atol=1e-4)


def test_a_dynamic_batch_export_takes_any_batch_size(run, tmp_path):
    import onnxruntime

    assert cli("export", str(run), "--dynamic-batch", cwd=tmp_path).returncode == 0
    session = onnxruntime.InferenceSession(str(run / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert isinstance(session.get_inputs()[0].shape[0], str)
    model, _, images = model_and_test_images(run, count=7)
    with torch.no_grad():
        assert np.allclose(session.run(None, {"images": images.numpy()})[0], model(images).numpy(), atol=1e-4)


def test_a_torch_export_program_agrees_and_carries_its_metadata(run, tmp_path):
    from cvrun.engine.export import read_pt2_metadata

    result = cli("export", str(run), "--format", "pt2", "--dynamic-batch", cwd=tmp_path)
    assert result.returncode == 0 and "top-1 equal on 1000/1000" in result.stdout, result.stderr
    path = run / "export" / "model.pt2"
    model, card, images = model_and_test_images(run, count=50)
    with torch.no_grad():
        assert torch.allclose(torch.export.load(str(path)).module()(images), model(images), atol=1e-5)
    assert ModelCard.from_metadata(read_pt2_metadata(path), "model.pt2") == card


class Histogram(nn.Module):
    """torch.histc has no ONNX translation."""

    def forward(self, images):
        return torch.histc(images, bins=3).expand(images.shape[0], 3)


def test_a_model_the_exporter_cannot_express_names_the_operator(tmp_path):
    from cvrun.engine.export import ExportFailed, export_model

    card = ModelCard(["a", "b", "c"], 8, [0.5] * 3, [0.25] * 3)
    with pytest.raises(ExportFailed, match=r"the onnx exporter cannot express this model: aten\.histc.*try --format pt2") \
            as caught:
        export_model(Histogram(), card, tmp_path / "model.onnx", dynamic_batch=False)
    assert caught.value.exit_code == 2 and not (tmp_path / "model.onnx").exists()


def test_exporting_a_folder_that_is_no_run_is_one_line(tmp_path):
    result = cli("export", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and "is not a cvrun run folder" in result.stderr and result.stderr.count("\n") == 1
