"""`cvrun reproduce RUN_DIR [--check]`, and Hydra's own route to the same config."""

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import cli


def reproduced_in(result) -> Path:
    """The folder `cvrun reproduce` printed it reproduced the run in."""
    return Path(next(line for line in result.stdout.splitlines() if line.startswith("reproduced in ")).split(" ", 2)[2])


def runs(cwd: Path, pattern: str) -> list[Path]:
    return sorted((cwd / "outputs").glob(f"*/{pattern}"))


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("reproduce")
    result = cli("train", "dataset=shapes", "model=lenet5", "dataset.train_size=300", "dataset.test_size=100",
                     "trainer.epochs=2", "trainer.batch_size=32", "trainer.deterministic=true",
                     "trainer.progress=false", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return cwd, runs(cwd, "*_scratch_lenet5")[0]


def test_check_passes_on_a_deterministic_run_and_names_the_original(original):
    cwd, run = original
    result = cli("reproduce", str(run), "--check", cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "check: the runs agree" in result.stdout and "exact (deterministic run on the CPU)" in result.stdout
    new = reproduced_in(result)
    summary = json.loads((new / "summary.json").read_text())
    before = json.loads((run / "summary.json").read_text())
    assert summary["reproduces"] == str(run) and summary["reproduce_overrides"] == []
    for key in ("test_acc1", "test_loss", "final_train_loss", "best_val_acc1"):
        assert summary[key] == before[key], key
    assert (new / "train.log").read_text().count("epoch ") >= 2


def test_check_fails_when_the_recorded_result_was_altered(original, tmp_path):
    cwd, run = original
    altered = tmp_path / "altered"
    shutil.copytree(run, altered)
    summary = json.loads((altered / "summary.json").read_text())
    summary["test_acc1"] += 1.0
    summary["splits"]["train"]["per_class"]["circle"] -= 2  # as if the data had gained two images since
    (altered / "summary.json").write_text(json.dumps(summary))
    result = cli("reproduce", str(altered), "--check", cwd=cwd)
    assert result.returncode == 1
    assert ("check: the runs DIFFER because their inputs differ: the data changed: train/circle has 2 more images"
            in result.stdout), result.stdout
    assert any(line.startswith("test_acc1") and line.endswith("NO") for line in result.stdout.splitlines())


def test_overrides_are_applied_and_reported(original):
    cwd, run = original
    result = cli("reproduce", str(run), "trainer.epochs=1", cwd=cwd)
    assert result.returncode == 0, result.stderr
    summary = json.loads((reproduced_in(result) / "summary.json").read_text())
    assert summary["reproduce_overrides"] == ["trainer.epochs=1"] and summary["epochs_run"] == 1


def test_reproduce_mistakes_are_one_line(original, tmp_path):
    cwd, run = original
    for args, expected in ((["reproduce", str(tmp_path)], "has no config.yaml"),
                           (["reproduce", str(run), "trainer.epoch=1"], "trainer.epoch"),
                           (["reproduce"], "the following arguments are required: run_dir")):
        result = cli(*args, cwd=tmp_path)
        assert result.returncode == 2 and expected in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_hydra_route_reruns_the_saved_config(original):
    cwd, run = original
    result = cli("train", "--config-dir", str(run), "--config-name", "config", "hydra.run.dir=outputs/x/hydra_route",
                     cwd=cwd)
    assert result.returncode == 0, result.stderr
    rerun = json.loads((cwd / "outputs/x/hydra_route/summary.json").read_text())
    assert rerun["test_loss"] == json.loads((run / "summary.json").read_text())["test_loss"]
    lines = (cwd / "outputs/x/hydra_route/train.log").read_text().splitlines()
    assert lines and all(re.match(r"\[\d\d:\d\d:\d\d\]\[(INFO|WARNING)\] ", line) for line in lines), lines[:3]


def test_a_group_option_replaces_the_saved_group(original, monkeypatch, tmp_path):
    from cvrun.commands.reproduce import apply_overrides, load_original

    saved, _ = load_original(original[1])
    cfg = apply_overrides(saved, ["model=vgg11", "aug=randaug", "optim.lr=0.1"])
    assert (cfg.model.name, cfg.model.dropout, cfg.aug.name, cfg.aug.n, cfg.optim.lr) == ("vgg11", 0.5, "randaug", 2, 0.1)
    assert cfg.dataset.train_size == 300  # the groups not named stay the run's


def test_the_side_by_side_table_rounds_every_figure():
    from cvrun.commands.reproduce import comparison

    table, agree = comparison({"final_val_acc1": 41.66666666666667, "test_loss": 1.234567891},
                              {"final_val_acc1": 41.66666666666667, "test_loss": 1.234567891}, exact=True)
    assert agree and "41.6667" in table and "1.2346" in table and "41.666666" not in table
    widths = {len(line) for line in table.splitlines()[1:-1]}
    assert len(widths) == 1  # columns line up


def test_a_config_that_is_not_yaml_is_one_line_and_leaves_no_folder(original, tmp_path):
    _, run = original
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / "config.yaml").write_text("dataset:\n  name: [shapes\n")
    result = cli("reproduce", str(broken), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"cvrun: error: {broken}/config.yaml cannot be read (while "
                                                  "parsing a flow sequence); it is not the config.yaml cvrun wrote: "
                                                  "restore it, or reproduce another run"]
    assert not (tmp_path / "outputs").exists()


def test_a_changed_teacher_checkpoint_is_named():
    from cvrun.commands.reproduce import changed_inputs

    splits = {"train": {"images": 3, "per_class": {"a": 3}, "fingerprint": "f"}}
    assert changed_inputs({"splits": splits, "teacher_sha256": "aa"}, {"splits": splits, "teacher_sha256": "bb"}) == [
        "the checkpoint of regime.teacher changed: sha256 aa then, bb now"]
    assert changed_inputs({"splits": splits, "pretrained_sha256": "aa"}, {"splits": splits, "pretrained_sha256": "aa"}) == []
