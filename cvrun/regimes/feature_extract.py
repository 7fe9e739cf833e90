"""`regime=feature_extract`: a pretrained model frozen but for a new head (regime.head_layers of its last
linear layers; 1: the output layer alone), trained on the frozen part's features."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cvrun.data.loaders import make_feature_loader
from cvrun.data.splits import build_splits
from cvrun.engine.evaluate import Normalize, ToDevice, predict
from cvrun.errors import UserError, require
from cvrun.regimes.base import REGIMES, Regime, RegimeConfig

log = logging.getLogger("cvrun")


@dataclass
class FeatureExtractConfig(RegimeConfig):
    name: str = "feature_extract"
    head_layers: int = 1  # the model's last linear layers that form the new head (1: the output layer)
    cache_features: bool = False  # run the frozen part once over un-augmented images; train on the stored features

    def check(self) -> None:
        require(self.head_layers >= 1,
                f"regime.head_layers must be >= 1 (1: the output layer alone), got {self.head_layers}")


@REGIMES.register("feature_extract")
class FeatureExtract(Regime):
    config = FeatureExtractConfig

    def prepare(self) -> None:
        self.require_pretrained()
        self.data = build_splits(self.cfg.dataset)
        self.model = self.build_model(self.cfg.regime.head_layers)
        self.model.freeze_backbone()
        self.setup_loaders(self.data)
        if self.cfg.regime.cache_features:
            self.use_cached_features()

    def use_cached_features(self) -> None:
        """Run the frozen part once over every split; the head then trains on the stored features."""
        cfg = self.cfg
        if cfg.aug.name != "none" or cfg.aug.mix:
            log.warning("regime.cache_features=true: aug=%s is not applied, the features are computed once "
                        "from un-augmented images", cfg.aug.name)
        try:
            frozen = self.model.frozen_part().to(self.device)
        except ValueError:
            raise UserError(f"regime.cache_features=true needs the head to lie after the backbone, but "
                            f"regime.head_layers={cfg.regime.head_layers} of {cfg.model.name} reaches into it; "
                            "use a smaller regime.head_layers or regime.cache_features=false") from None
        normalize = Normalize(list(cfg.dataset.mean), list(cfg.dataset.std), self.device)

        def cached(samples, train: bool):
            features, labels = predict(frozen, self.plain_loader(samples), normalize, self.dtype)
            batch_size = cfg.trainer.batch_size if train else cfg.trainer.eval_batch_size or 2 * cfg.trainer.batch_size
            return make_feature_loader(features, labels, batch_size, train=train, seed=cfg.trainer.seed,
                                       balanced=train and cfg.dataset.sampler == "balanced")

        self.train_loaders = {"labeled": cached(self.data.train, True)}
        self.val_loader = cached(self.data.val, False) if self.val_loader is not None else None
        self.test_loader = cached(self.data.test, False)
        self.normalize, self.mixer = ToDevice(self.device), None
        log.info("cached %d-wide features of %d training images",
                 self.train_loaders["labeled"].dataset.features.shape[1], len(self.data.train))
        self.model.takes_features = True
