"""cvrun.api: train, evaluate, predict, load_model and sweep from Python, twice in one process, and from Hydra's
compose API."""

import json
import logging
import os
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from cvrun import api
from cvrun.errors import UserError
from tests.conftest import REPO

USER_CONFIGS = REPO / "tests" / "user_configs"

# Three shapes, two epochs: learnt well above chance (33%) in seconds.
RUN = ["dataset=shapes", "dataset.image_size=32", "dataset.classes=[circle,square,cross]", "dataset.train_size=600",
       "dataset.test_size=100", "model=lenet5", "aug=none", "optim=adamw", "optim.lr=0.003", "trainer.epochs=2",
       "trainer.batch_size=16", "trainer.progress=false"]


def composed(overrides):
    """The config as a user composes it with Hydra's own API (cvrun.api's import registered cvrun's schemas)."""
    from hydra import compose, initialize_config_dir

    from cvrun.paths import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("train", overrides=overrides)


def process_state():
    cvrun_log = logging.getLogger("cvrun")
    return (list(sys.argv), list(logging.getLogger().handlers), list(cvrun_log.handlers), cvrun_log.propagate,
            cvrun_log.level)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs in one process, as a notebook makes them: one from overrides, one from Hydra's compose API."""
    folder = tmp_path_factory.mktemp("api")
    previous, before = os.getcwd(), process_state()
    os.chdir(folder)
    try:
        first = api.train(RUN)
        second = api.train(composed([*RUN, "dataset.train_size=120", "trainer.epochs=1", "trainer.seed=1"]))
        after = process_state()
    finally:
        os.chdir(previous)
    return SimpleNamespace(folder=folder, first=first, second=second, before=before, after=after)


def test_two_runs_in_one_process_each_in_its_own_folder_with_its_own_results(runs):
    first, second = runs.first, runs.second
    assert first.run_dir != second.run_dir
    assert {first.run_dir.parent.parent, second.run_dir.parent.parent} == {runs.folder / "outputs"}
    assert first.summary["test_acc1"] > 45, first.summary  # chance 33
    for run, seed, epochs in ((first, 0, [1, 2]), (second, 1, [1])):
        assert run.status == "completed" and run.summary["seed"] == seed
        assert [row["epoch"] for row in run.metrics] == epochs
        assert run.metrics[-1]["val_acc1"] == pytest.approx(run.summary["final_val_acc1"], abs=1e-3)
        log = (run.run_dir / "train.log").read_text()
        assert log.count("run folder:") == 1 and f"run folder: {run.run_dir}" in log
    # three of the five shapes of 600 and of 120 images, less the validation tenth
    assert (first.summary["splits"]["train"]["images"], second.summary["splits"]["train"]["images"]) == (324, 65)


def test_nothing_of_a_run_stays_in_the_process(runs):
    """sys.argv, the root logger's handlers and cvrun's logger are as they were before the runs."""
    assert runs.after == runs.before


def test_a_run_from_overrides_keeps_hydras_record(runs):
    """What `cvrun summarize` and a resume's check read of a run's command: its overrides, as a Hydra job's."""
    from cvrun.report.table import read_overrides

    record = runs.first.run_dir / ".hydra"
    assert read_overrides(runs.first.run_dir) == RUN
    assert OmegaConf.load(record / "config.yaml").model.name == "lenet5"
    assert OmegaConf.load(record / "hydra.yaml").hydra.runtime.output_dir == str(runs.first.run_dir)


def test_the_task_function_takes_a_composed_config_outside_a_hydra_job(tmp_path, monkeypatch):
    """`cvrun train`'s own task on a composed config: a mistake is a UserError (not "HydraConfig was not set"),
    found before any folder is made."""
    from cvrun.commands.train import train

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="trainer.epochs"):
        train(composed([*RUN, "trainer.epochs=0"]))
    assert list(tmp_path.iterdir()) == []


def test_evaluate_scores_the_best_checkpoint_as_the_run_did(runs):
    result = api.evaluate(runs.first.run_dir)
    assert result["acc1"] == pytest.approx(runs.first.summary["test_acc1"], abs=1e-3)
    assert result["samples"] == runs.first.summary["test_samples"]


def shape_images(folder):
    """A filled circle and a filled square, white on black, as PNG files."""
    circle, square = np.zeros((40, 40, 3), np.uint8), np.zeros((40, 40, 3), np.uint8)
    cv2.circle(circle, (20, 20), 12, (255, 255, 255), -1)
    cv2.rectangle(square, (8, 8), (31, 31), (255, 255, 255), -1)
    paths = [folder / "circle.png", folder / "square.png"]
    for path, image in zip(paths, (circle, square)):
        cv2.imwrite(str(path), image)
    return paths


def test_predict_gives_predictions_csvs_rows_and_load_model_the_same_classes(runs, tmp_path):
    paths = shape_images(tmp_path)
    rows = api.predict(runs.first.run_dir, paths, top_k=2)
    assert [row["path"] for row in rows] == [str(p) for p in paths]
    assert list(rows[0]) == ["path", "top1", "top1_prob", "top2", "top2_prob", "error"]
    loaded = api.load_model(runs.first.run_dir)
    assert not loaded.model.training and loaded.class_names == ["circle", "square", "cross"]
    for path, row in zip(paths, rows):
        with torch.no_grad():
            probs = loaded.model(loaded.transform(path)[None]).softmax(1)[0]
        assert row["error"] == "" and loaded.class_names[int(probs.argmax())] == row["top1"]
        assert float(probs.max()) == pytest.approx(float(row["top1_prob"]), abs=1e-5)


def test_a_mistake_is_a_user_error_and_makes_no_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"unknown config key 'trainer.epochz'; did you mean 'trainer.epochs'\?"):
        api.train([*RUN, "trainer.epochz=1"])
    with pytest.raises(UserError, match="runs one run; run a sweep with cvrun.api.sweep"):
        api.train(["-m", *RUN])
    with pytest.raises(UserError, match="takes overrides"):
        api.train(["--config-dir", str(tmp_path), *RUN])
    assert list(tmp_path.iterdir()) == []


def test_a_config_folder_of_the_users_serves_one_call(tmp_path, monkeypatch):
    """hydra.searchpath names the user's folder for the call that names it, not for the next one."""
    monkeypatch.chdir(tmp_path)
    cfg = api.compose([f"hydra.searchpath=[file://{USER_CONFIGS}]", "+experiment=shapes_quick"])
    assert cfg.model.name == "lenet5" and cfg.model.dropout == 0.2 and cfg.dataset.train_size == 200
    with pytest.raises(UserError, match="unknown experiment 'shapes_quick'"):
        api.compose(["experiment=shapes_quick"])


def test_a_sweep_in_its_own_folder_leaves_the_process_as_it_was(tmp_path, monkeypatch):
    """Two jobs of the user's own experiment (tests/user_configs): its folder too is the sweep's alone."""
    from cvrun.paths import config_sources

    monkeypatch.chdir(tmp_path)
    before = process_state()
    swept = api.sweep([f"hydra.searchpath=[file://{USER_CONFIGS}]", "experiment=shapes_quick", "trainer.seed=0,1"])
    assert process_state() == before and config_sources() == []
    assert swept.sweep_dir.parent.parent == tmp_path / "multirun"
    assert [(run.run_dir.parent, run.status, run.summary["seed"]) for run in swept.runs] == [
        (swept.sweep_dir, "completed", 0), (swept.sweep_dir, "completed", 1)]
    assert (swept.sweep_dir / "summary.csv").is_file()


def test_a_resume_takes_the_settings_that_may_change_as_the_command_line_does(tmp_path, monkeypatch):
    """trainer.num_workers given with trainer.resume applies to the resumed run, as `cvrun train` does it."""
    from cvrun.commands import train as train_command

    monkeypatch.chdir(tmp_path)
    small = ["dataset=shapes", "dataset.train_size=100", "dataset.test_size=20", "model=lenet5", "trainer.epochs=1",
             "trainer.progress=false", "trainer.num_workers=1"]
    run = api.train([*small, "hydra.run.dir=run"]).run_dir
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))  # as Ctrl-C leaves it
    carried_on, resumed_config = [], train_command.resumed_config
    monkeypatch.setattr(train_command, "resumed_config",
                        lambda cfg, folder: carried_on.append(resumed_config(cfg, folder)) or carried_on[-1])
    api.train(["trainer.resume=run", "trainer.num_workers=0"])
    assert carried_on[0].trainer.num_workers == 0
