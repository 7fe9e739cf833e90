"""`regime=feature_extract`: a pretrained model frozen but for a new head (regime.head_layers of its last
linear layers; 1: the output layer alone), trained on the frozen part's features."""

from __future__ import annotations

from typing import Any

from cvrun.data.loaders import make_feature_loader
from cvrun.data.splits import DataSplits
from cvrun.engine.evaluate import Normalize, ToDevice, predict
from cvrun.engine.rundir import RunFolder
from cvrun.engine.trainer import Trainer, TrainingJob
from cvrun.errors import UserError
from cvrun.models.registry import Classifier
from cvrun.regimes import register_regime
from cvrun.regimes.common import (eval_batch_size, log, plain_loader, require_pretrained, split_sizes, standard_job,
                                  trainer_data_model)


@register_regime("feature_extract")
def feature_extract(cfg: Any, run: RunFolder) -> dict:
    require_pretrained(cfg)
    trainer, data, model = trainer_data_model(cfg, run)
    model.freeze_backbone()
    if cfg.regime.cache_features:
        return trainer.fit(cached_feature_job(cfg, data, model, trainer))
    return trainer.fit(standard_job(cfg, data, model, trainer.device))


def cached_feature_job(cfg: Any, data: DataSplits, model: Classifier, trainer: Trainer) -> TrainingJob:
    """Run the frozen backbone once over every split; the head then trains on the stored features."""
    if cfg.aug.name != "none" or cfg.aug.mix:
        log.warning("regime.cache_features=true: aug=%s is not applied, the features are computed once "
                    "from un-augmented images", cfg.aug.name)
    normalize = Normalize(list(cfg.dataset.mean), list(cfg.dataset.std), trainer.device)
    try:
        frozen = model.frozen_part().to(trainer.device)
    except ValueError:
        raise UserError(f"regime.cache_features=true needs the head to lie after the backbone, but "
                        f"regime.head_layers={cfg.regime.head_layers} of {cfg.model.name} reaches into it; "
                        "use a smaller regime.head_layers or regime.cache_features=false") from None
    batch = {"train": cfg.trainer.batch_size, "eval": eval_batch_size(cfg)}

    def cached(samples, train: bool):
        features, labels = predict(frozen, plain_loader(cfg, samples, data.image_size, trainer.device),
                                   normalize, trainer.dtype)
        return make_feature_loader(features, labels, batch["train" if train else "eval"], train=train,
                                   seed=cfg.trainer.seed)

    train_loader = cached(data.train, True)
    val_loader = cached(data.val, False) if data.val is not None and len(data.val) else None
    test_loader = cached(data.test, False)
    log.info("cached %d-wide features of %d training images", train_loader.dataset.features.shape[1], len(data.train))
    model.takes_features = True
    return TrainingJob(model=model, train_loader=train_loader, val_loader=val_loader, test_loader=test_loader,
                       class_names=data.class_names, image_size=data.image_size,
                       mean=list(cfg.dataset.mean), std=list(cfg.dataset.std),
                       prepare=ToDevice(trainer.device), summary_extra=split_sizes(data), splits=data.record)
