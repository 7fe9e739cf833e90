"""A user's own config folder beside cvrun's (--config-dir, -cd, hydra.searchpath with file:// and pkg://): its
options compose, are listed and checked as cvrun's are; `+experiment=`; hydra.job.chdir keeps relative paths."""

import json

import pytest
from omegaconf import OmegaConf

from cvrun.paths import config_search_dirs, option_file, use_config_sources
from tests.conftest import REPO, cli, single, write_image_tree

USER_CONFIGS = REPO / "tests" / "user_configs"
USER_OPTIONS = ["experiment=shapes_quick", "aug=hflip_only", "regime=fixmatch_low_threshold"]


@pytest.fixture(autouse=True)
def no_user_folders_after():
    yield
    use_config_sources(None, [])  # the folders one command line named are no other test's


@pytest.mark.parametrize("given", [["--config-dir", str(USER_CONFIGS)], [f"--config-dir={USER_CONFIGS}"],
                                   ["-cd", "user_configs"], ["hydra.searchpath=[file://user_configs]"],
                                   ["hydra.searchpath=[pkg://tests.user_configs]"]])
def test_a_users_experiment_model_aug_and_regime_preset_compose_beside_cvrun(given):
    result = cli("train", *given, *USER_OPTIONS, "--cfg", "job", cwd=REPO / "tests")
    assert result.returncode == 0, result.stderr
    cfg = OmegaConf.create(result.stdout)
    assert (cfg.dataset.name, cfg.dataset.train_size, cfg.trainer.epochs) == ("shapes", 200, 1)  # the experiment
    assert (cfg.model.name, cfg.model.dropout) == ("lenet5", 0.2)  # its model, the user's preset of lenet5
    assert (cfg.aug.name, cfg.aug.hflip, cfg.aug.vflip) == ("flip", 0.5, 0.0)
    assert (cfg.regime.name, cfg.regime.threshold, cfg.regime.mu) == ("fixmatch", 0.8, 7)


def test_the_search_path_is_hydras_order_with_cvrun_first(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "lenet5.yaml").write_text("name: lenet5\ndropout: 0.5\n")  # cvrun's name: cvrun's wins
    use_config_sources(str(tmp_path), ["pkg://tests.user_configs"])
    assert config_search_dirs()[1:] == [tmp_path, USER_CONFIGS]
    assert option_file("model", "lenet5").parent.parent == config_search_dirs()[0]
    assert option_file("model", "lenet5_dropout") == USER_CONFIGS / "model" / "lenet5_dropout.yaml"
    assert option_file("model", "lenet6") is None


def test_a_users_misspelt_option_or_key_is_one_line_naming_the_users_options(tmp_path):
    misspelt = cli("train", "-cd", str(USER_CONFIGS), "model=lenet5_dropuot", cwd=tmp_path)
    lines = misspelt.stderr.strip().splitlines()
    assert misspelt.returncode == 2 and len(lines) == 1, misspelt.stderr
    assert lines[0].startswith("cvrun: error: unknown model 'lenet5_dropuot'; valid model options: alexnet, ")
    assert "lenet5, lenet5_dropout, " in lines[0] and lines[0].endswith("; did you mean 'lenet5_dropout'?")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "wide.yaml").write_text("defaults: [lenet5, _self_]\ndropuot: 0.1\n")
    bad_key = cli("train", "-cd", str(tmp_path), "model=wide", cwd=tmp_path)
    assert bad_key.returncode == 2 and len(bad_key.stderr.strip().splitlines()) == 1, bad_key.stderr
    assert "unknown config key 'model.dropuot'" in bad_key.stderr


def test_plus_experiment_works_as_in_the_lightning_hydra_template(tmp_path):
    result = cli("train", "-cd", str(USER_CONFIGS), "+experiment=shapes_quick", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    cfg = OmegaConf.create(result.stdout)
    assert (cfg.dataset.name, cfg.model.dropout) == ("shapes", 0.2)


def test_with_hydra_job_chdir_relative_paths_mean_the_launch_folder(tmp_path):
    write_image_tree(tmp_path / "tree", {"cat": 8, "dog": 8}, size=16)
    result = cli("train", "dataset=imagefolder", "dataset.root=tree", "dataset.image_size=16", "model=lenet5",
                 "aug=none", "trainer.epochs=1", "trainer.progress=false", "hydra.job.chdir=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = single((tmp_path / "outputs").glob("*/*"))
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    assert OmegaConf.load(run / "config.yaml").dataset.root == str(tmp_path / "tree")
