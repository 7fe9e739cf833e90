"""The frozen teacher, and the pseudo-labels it gives the unlabeled pool."""

import json
import logging
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cvrun.data.samples import HIDDEN, Samples
from cvrun.errors import UserError
from cvrun.io import file_sha256
from cvrun.models import create_model
from cvrun.models.pretrained import source_record
from cvrun.regimes.pseudo_label import refuse_no_pseudo_labels
from cvrun.regimes.teacher import Teacher, select_pseudo_labels
from tests.conftest import cli, lock_held_elsewhere, make_cfg, train_run, write_image_tree
from tests.regimes.conftest import bare_regime

STATS = ([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])


def test_the_teacher_stays_in_eval_mode_without_gradients():
    teacher = Teacher(create_model("resnet18", 3, 32), STATS, STATS)
    teacher.train()
    before = teacher.model.backbone.bn1.running_mean.clone()
    out = teacher(torch.randn(4, 3, 32, 32))
    assert not teacher.model.training and not out.requires_grad
    assert all(not p.requires_grad for p in teacher.parameters())
    assert torch.equal(teacher.model.backbone.bn1.running_mean, before)


def test_a_teacher_with_other_statistics_sees_the_same_images():
    model = create_model("lenet5", 3, 32).eval()
    raw = torch.rand(2, 3, 32, 32)
    student_view = (raw - 0.5) / 0.25
    teacher_view = (raw - 0.4) / 0.2
    teacher = Teacher(model, STATS, ([0.4] * 3, [0.2] * 3))
    assert torch.allclose(teacher(student_view), model(teacher_view), atol=1e-4)


def pool(true_labels):
    truth = np.asarray(true_labels)
    return Samples(labels=np.full(len(truth), HIDDEN), true_labels=truth, images=np.zeros((len(truth), 4, 4, 3), np.uint8))


def test_pseudo_labels_keep_the_confident_hard_or_soft_and_are_scored_on_hidden_labels():
    probabilities = torch.tensor([[0.9, 0.1, 0.0], [0.5, 0.4, 0.1], [0.1, 0.8, 0.1], [0.05, 0.05, 0.9]])
    names = ["a", "b", "c"]
    hard = select_pseudo_labels(probabilities, pool([0, 0, 2, 2]), names, threshold=0.7, soft=False)
    assert hard.kept.tolist() == [0, 2, 3]
    assert hard.targets.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert hard.stats["pseudo_labels_kept"] == 3 and hard.stats["pseudo_label_acc1"] == pytest.approx(66.67)
    assert hard.stats["pseudo_label_counts"] == {"a": 1, "b": 1, "c": 1}
    soft = select_pseudo_labels(probabilities, pool([0, 0, 2, 2]), names, threshold=0.7, soft=True)
    assert torch.equal(soft.targets, probabilities[[0, 2, 3]])
    unknown = select_pseudo_labels(probabilities, pool([HIDDEN] * 4), names, threshold=0.0, soft=False)
    assert unknown.stats["pseudo_labels_kept"] == 4 and unknown.stats["pseudo_label_acc1"] is None


def test_balanced_pseudo_labels_cap_every_class_at_the_rarest():
    probabilities = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.2, 0.8]])
    balanced = select_pseudo_labels(probabilities, pool([0, 0, 0, 1]), ["a", "b"], 0.5, False, balance=True)
    assert balanced.kept.tolist() == [0, 3]  # the most confident "a" and the only "b"


def test_the_pseudo_label_step_weighs_each_images_soft_cross_entropy(tmp_path):
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    regime = bare_regime(make_cfg(regime={"name": "pseudo_label"}), tmp_path)
    targets = {"label": torch.tensor([0, HIDDEN]), "target": torch.tensor([[1.0, 0.0], [0.3, 0.7]]),
               "weight": torch.tensor([1.0, 0.5])}
    model = torch.nn.ModuleDict({"model": torch.nn.Identity()})  # the "images" are the logits
    loss, sums = regime.training_step(model, {"labeled": (logits, targets)}, None)
    log_p = logits.log_softmax(1)
    expected = (-(log_p[0, 0]) * 1.0 + -(0.3 * log_p[1, 0] + 0.7 * log_p[1, 1]) * 0.5) / 2
    assert torch.isclose(loss, expected) and sums["correct"] == 2


def test_teacher_mistakes_are_user_errors(source_run, tmp_path):
    pool_split = {"labeled_per_class": 40}
    with pytest.raises(UserError, match="regime=pseudo_label needs regime.teacher"):
        train_run(tmp_path / "a", dataset=pool_split, regime={"name": "pseudo_label"})
    with pytest.raises(UserError, match=r"trained on classes \['circle', 'ring', 'square'\], but this dataset has "
                                        r"\['circle', 'ring', 'square', 'triangle', 'cross'\]"):
        train_run(tmp_path / "b", dataset=pool_split, regime={"name": "distill", "teacher": str(source_run)})
    with pytest.raises(UserError, match="regime.teacher=.* does not exist"):
        train_run(tmp_path / "c", dataset=pool_split, regime={"name": "distill", "teacher": str(tmp_path / "nope")})
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.yaml").write_text((source_run / "config.yaml").read_text())
    with pytest.raises(UserError, match="has no checkpoints/best.pt"):
        train_run(tmp_path / "d", dataset=pool_split, regime={"name": "distill", "teacher": str(tmp_path / "empty")})
    with pytest.raises(UserError, match="regime=pseudo_label needs unlabeled images"):
        train_run(tmp_path / "e", dataset={"classes": ["circle", "ring", "square"]},
                  regime={"name": "pseudo_label", "teacher": str(source_run)})


def copied_run(source_run, path, **summary):
    """A copy of the source run with some summary.json values replaced."""
    shutil.copytree(source_run, path)
    record = json.loads((path / "summary.json").read_text())
    (path / "summary.json").write_text(json.dumps({**record, **summary}))
    return path


SMALL_RUN = ["model=lenet5", "trainer.epochs=1", "trainer.progress=false"]
SMALL_SHAPES = ["dataset=shapes", "dataset.train_size=100", "dataset.test_size=20", *SMALL_RUN]


def test_mistakes_found_before_the_run_folder_leave_no_folder(source_run, tmp_path):
    failed = copied_run(source_run, tmp_path / "failed", status="failed", reason="the loss became nan")
    tree = write_image_tree(tmp_path / "tree", {"cat": 4, "dog": 4})
    three = "dataset.classes=[circle,ring,square]"
    cases = [
        (["regime=distill", f"regime.teacher={source_run}"], "was trained on classes"),
        (["regime=distill", f"regime.teacher={failed}", three], "is a failed run (the loss became nan)"),
        (["regime=finetune", "model=mlp", f"model.pretrained={source_run}"], "is a lenet5, but model=mlp"),
        (["model.pretrained=imagenet"], "no ImageNet weights for lenet5"),
        (["trainer.precision=16", "trainer.device=cpu"], "needs CUDA"),
        (["dataset=imagefolder", f"dataset.root={tree}", f"dataset.unlabeled_root={tree}/test"],
         "overlaps the test split"),
        # found from the tree's file listing (planned_splits), nothing decoded
        (["dataset=imagefolder", f"dataset.root={tree}", "regime=fixmatch", "dataset.labeled_per_class=4"],
         "dataset.labeled_per_class keeps every training image labeled"),
        (["dataset=imagefolder", f"dataset.root={tree}", "regime=knn", "regime.k=9"],
         "regime.k=9 neighbours, but the training set holds 7 images"),
    ]
    for args, expected in cases:
        small = SMALL_RUN if "dataset=imagefolder" in args else SMALL_SHAPES  # shapes' own keys go with shapes
        result = cli("train", *small, *args, cwd=tmp_path)
        assert result.returncode == 2 and expected in result.stderr, (args, result.stderr)
        assert not (tmp_path / "outputs").exists(), args
    result = cli("train", "-m", *SMALL_SHAPES, "regime=distill", f"regime.teacher={source_run},{failed}", three,
                 "dataset.image_size=32", cwd=tmp_path)
    assert result.returncode == 2 and "is a failed run" in result.stderr
    assert not (tmp_path / "multirun").exists()


def test_a_teacher_with_non_finite_weights_is_refused_naming_it(source_run, tmp_path):
    diverged = copied_run(source_run, tmp_path / "diverged")
    state = torch.load(diverged / "checkpoints" / "best.pt", weights_only=True)
    for weights in filter(None, (state["model"], state.get("ema"))):
        next(iter(weights.values())).fill_(float("nan"))
    torch.save(state, diverged / "checkpoints" / "best.pt")
    with pytest.raises(UserError, match=r"regime.teacher=.*diverged: its checkpoint best.pt holds non-finite weights"):
        train_run(tmp_path / "run", dataset={"classes": ["circle", "ring", "square"], "train_size": 60},
                  regime={"name": "distill", "teacher": str(diverged)})
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"


def test_an_interrupted_teacher_is_used_with_one_warning_and_its_status_and_hash_recorded(source_run, tmp_path,
                                                                                           caplog):
    interrupted = copied_run(source_run, tmp_path / "interrupted", status="interrupted")
    with caplog.at_level(logging.WARNING, logger="cvrun"):
            summary = train_run(tmp_path / "run", dataset={"classes": ["circle", "ring", "square"], "train_size": 90,
                                                       "test_size": 30, "labeled_per_class": 10},
                            regime={"name": "pseudo_label", "teacher": str(interrupted), "threshold": 0.0},
                            trainer={"epochs": 1})
    assert summary["status"] == "completed" and summary["teacher_status"] == "interrupted"
    assert summary["teacher_sha256"] == file_sha256(source_run / "checkpoints" / "best.pt")[:16]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"regime.teacher={interrupted} is a run whose status is interrupted: its best checkpoint so far is used"]


def test_a_running_teacher_is_reported_running_and_a_completed_one_quietly(source_run, tmp_path, caplog):
    running = copied_run(source_run, tmp_path / "running", status="running")
    with lock_held_elsewhere(running), caplog.at_level(logging.WARNING, logger="cvrun"):
        assert source_record(str(running), "regime.teacher")["teacher_status"] == "running"
    assert [r.getMessage() for r in caplog.records] == [
        f"regime.teacher={running} is a run whose status is running: its best checkpoint so far is used"]
    caplog.clear()
    assert source_record(str(source_run), "model.pretrained")["pretrained_status"] == "completed"
    assert not caplog.records


def test_pseudo_labelling_that_keeps_no_image_fails_naming_the_threshold_or_the_balance():
    probabilities = torch.tensor([[0.6, 0.4], [0.3, 0.7], [0.8, 0.2]])
    regime = SimpleNamespace(threshold=0.9, balance=False)
    kept = select_pseudo_labels(probabilities, pool([0, 1, 0]), ["a", "b"], 0.9, False)
    with pytest.raises(UserError, match=r"regime.threshold=0.9 keeps none of the 3 pool images: the teacher's highest "
                                        r"confidence on them is 0.800; lower regime.threshold"):
        refuse_no_pseudo_labels(kept, probabilities, regime)
    regime = SimpleNamespace(threshold=0.75, balance=True)
    kept = select_pseudo_labels(probabilities, pool([0, 1, 0]), ["a", "b"], 0.75, False, balance=True)
    with pytest.raises(UserError, match="regime.balance=true .* labels no pool image b with confidence >= "
                                        "regime.threshold=0.75: set regime.balance=false"):
        refuse_no_pseudo_labels(kept, probabilities, regime)
