import pytest
from omegaconf import OmegaConf

from cvrun.config import TrainConfig, schema_keys, validate
from cvrun.errors import UserError
from cvrun.paths import config_dir


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


@pytest.mark.parametrize("preset", sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml")))
def test_every_experiment_preset_composes_and_validates(preset):
    from hydra import compose, initialize_config_dir

    from cvrun.commands import register_schemas

    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose(config_name="train", overrides=[f"experiment={preset}"])
    typed = validate(cfg, TrainConfig)
    assert typed.dataset.name in ("cifar10", "cifar100")
