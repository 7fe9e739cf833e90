from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cvrun.config import (TrainConfig, absolute_paths, load_run_config, path_keys, schema_keys, schema_path_keys,
                          validate)
from cvrun.errors import UserError
from cvrun.paths import config_dir
from tests.conftest import make_cfg


def test_schema_keys_are_dotted_and_cover_the_contract():
    keys = schema_keys(TrainConfig)
    for key in ("dataset.root", "dataset.download", "dataset.subset", "dataset.classes", "dataset.labeled_per_class",
                "dataset.unlabeled_root", "dataset.val_fraction", "model.pretrained", "model.small_input",
                "model.dropout", "model.drop_path", "optim.lr", "optim.weight_decay", "trainer.epochs",
                "trainer.batch_size", "trainer.seed", "trainer.device", "trainer.precision",
                "trainer.deterministic", "trainer.resume", "trainer.progress"):
        assert key in keys


def test_validate_rejects_unknown_keys_and_wrong_types():
    with pytest.raises(UserError, match="trainer.epoch"):
        validate(OmegaConf.create({"trainer": {"epoch": 3}}), TrainConfig)
    with pytest.raises(UserError, match="trainer.epochs"):
        validate(OmegaConf.create({"trainer": {"epochs": "many"}}), TrainConfig)
    with pytest.raises(UserError, match="precision"):
        validate(OmegaConf.create({"trainer": {"precision": "fp8"}}), TrainConfig)


def test_validate_fills_defaults_and_keeps_values():
    cfg = validate(OmegaConf.create({"trainer": {"epochs": 3}, "model": {"name": "lenet5"}}), TrainConfig)
    assert cfg.trainer.epochs == 3 and cfg.model.name == "lenet5" and cfg.dataset.val_fraction == 0.1


def composed_train(overrides: list[str]):
    """`cvrun train OVERRIDES`'s config as Hydra composes it from cvrun's configs, validated."""
    from hydra import compose, initialize_config_dir

    from cvrun.commands import register_schemas

    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return validate(compose(config_name="train", overrides=overrides), TrainConfig)


@pytest.mark.parametrize("preset", sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml")))
def test_every_experiment_preset_composes_and_validates(preset):
    assert composed_train([f"experiment={preset}"]).dataset.name in ("cifar10", "cifar100")


def test_mean_teachers_long_presets_keep_usbs_consistency_weight_over_the_short_runs_default():
    """The default (10) was measured level with labels alone at the default 10 epochs, where USB's 50 lost 0.45
    points; the presets' figures were measured at 50 over thousands of steps and must not change under them."""
    weights = {override: composed_train([override]).regime.lambda_u
               for override in ("regime=mean_teacher", "experiment=cifar10_4k_mean_teacher",
                                "experiment=usb_cifar10_4000_mean_teacher")}
    assert weights == {"regime=mean_teacher": 10.0, "experiment=cifar10_4k_mean_teacher": 50.0,
                       "experiment=usb_cifar10_4000_mean_teacher": 50.0}


OWN_SCHEMA_GROUPS = ("model", "dataset", "optim", "sched")


def cvrun_options(group):
    from cvrun.config import option_registry

    # cvrun's own: a test may register one of its own, without a YAML
    return [(name, entry) for name, entry in option_registry(group).items() if entry.__module__.startswith("cvrun.")]


@pytest.mark.parametrize("group", OWN_SCHEMA_GROUPS)
def test_every_options_yaml_fits_its_schema_and_names_it_when_it_has_keys_of_its_own(group):
    """An option with keys of its own lists its schema in its YAML's defaults (configs/optim/sgd.yaml: sgd_schema)
    for Hydra to compose onto; every YAML's values are keys its option's schema takes."""
    from omegaconf import OmegaConf

    from cvrun.config import option_values

    base = type(_default_of(TrainConfig, group))
    for name, entry in cvrun_options(group):
        defaults = OmegaConf.to_container(OmegaConf.load(config_dir() / group / f"{name}.yaml")).get("defaults", [])
        assert (f"{name}_schema" in defaults) == (entry.config is not base), (group, name, defaults)
        OmegaConf.merge(OmegaConf.structured(entry.config), option_values(group, name))


def _default_of(schema, section):
    from dataclasses import fields

    return next(f.default_factory() for f in fields(schema) if f.name == section)


@pytest.mark.parametrize("group, name", [("model", "mlp"), ("dataset", "shapes"), ("optim", "lamb"),
                                         ("sched", "cosine_restarts")])
def test_an_option_with_keys_of_its_own_composes_onto_its_schema(group, name):
    from cvrun.config import option_schema

    assert OmegaConf.get_type(composed_train([f"{group}={name}"])[group]) is option_schema(group, name)


def test_an_option_takes_the_keys_of_its_own_schema_and_refuses_another_options():
    cfg = make_cfg(model={"name": "mlp", "hidden": [64]}, dataset={"name": "shapes", "train_size": 50},
                   optim={"name": "lamb", "betas": [0.8, 0.9]}, sched={"name": "cosine_restarts", "period_mult": 1})
    assert (list(cfg.model.hidden), cfg.dataset.train_size, list(cfg.optim.betas), cfg.sched.period_mult) == \
        ([64], 50, [0.8, 0.9], 1)
    with pytest.raises(UserError, match=r"^unknown config key 'dataset.train_size'; dataset=cifar10 takes root, "):
        make_cfg(dataset={"name": "cifar10", "train_size": 5})
    with pytest.raises(UserError, match=r"^unknown config key 'sched.period_mult'; sched=step takes warmup_epochs, "
                                        r"milestones, gamma$"):
        make_cfg(sched={"name": "step", "period_mult": 2})


def test_a_config_saved_before_options_had_their_own_schemas_still_loads(tmp_path):
    """Before, every option held every group's keys at their defaults (lenet5 with hidden: [], sgd with betas);
    a run folder's config.yaml from then loads, and a non-default value there is a key of another option."""
    saved = OmegaConf.to_container(make_cfg(model={"name": "lenet5"}))
    saved["model"]["hidden"] = []
    saved["dataset"].update(train_size=1200, test_size=500)
    saved["optim"].update(betas=[0.9, 0.999])
    saved["sched"].update(milestones=[0.5, 0.75], gamma=0.1, pct_start=0.25, min_lr=0.0)
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(saved))
    loaded = load_run_config(tmp_path / "config.yaml")
    assert loaded.model.name == "lenet5" and "hidden" not in loaded.model and "betas" not in loaded.optim
    saved["model"]["hidden"] = [64]
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(saved))
    with pytest.raises(UserError, match="unknown config key 'model.hidden'; model=lenet5 takes"):
        load_run_config(tmp_path / "config.yaml")


def test_path_keys_come_from_the_schemas_and_feed_every_list_of_paths(tmp_path, monkeypatch):
    from cvrun.commands import register_schemas
    from cvrun.overrides import path_keys as override_path_keys
    from cvrun.overrides import quote_paths

    train_paths = {"dataset.root", "dataset.unlabeled_root", "dataset.cache_dir", "model.pretrained",
                   "regime.teacher", "trainer.resume", "hparams_search.resume"}
    assert train_paths | {"run_dir"} <= path_keys()  # eval's run_dir; its dataset.root is train's key too
    assert override_path_keys() == path_keys() | {"hydra.run.dir", "hydra.sweep.dir"}
    assert quote_paths(["dataset.root=a=b,c", "trainer.epochs=1"]) == ["dataset.root='a=b,c'", "trainer.epochs=1"]
    # configs/train.yaml's sweep folder names leave the path keys out through the path_keys resolver
    register_schemas()
    train_yaml = OmegaConf.load(config_dir() / "train.yaml")
    excluded = set(train_yaml.hydra.job.config.override_dirname.exclude_keys)
    assert excluded == schema_path_keys(TrainConfig) and train_paths <= excluded
    # and a run's saved config holds them absolute, but for the values that name no file
    monkeypatch.chdir(tmp_path)
    cfg = make_cfg(dataset={"name": "imagefolder", "root": "data", "cache_dir": "~/cache"},
                   model={"name": "lenet5", "pretrained": "imagenet"},
                   regime={"name": "distill", "teacher": "teacher_run"})
    absolute_paths(cfg)
    assert (cfg.dataset.root, cfg.regime.teacher, cfg.model.pretrained, cfg.dataset.unlabeled_root) == \
        (str(tmp_path / "data"), str(tmp_path / "teacher_run"), "imagenet", None)
    assert cfg.dataset.cache_dir == str(Path("~/cache").expanduser())
