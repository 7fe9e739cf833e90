"""`regime=knn`: no gradient steps; each test image takes the vote of its k nearest training images.

Images are embedded by the backbone of `model.pretrained` (the standard k-NN
probe of a backbone's features) or, with regime.features=pixels, are their
own normalised pixels. Similarity is cosine after centring on the training
mean; votes are equal or, with regime.weighted=true, weighted by
exp(similarity / 0.07) as in the k-NN monitor of Wu et al. 2018.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvrun.data.splits import build_splits, planned_splits
from cvrun.engine.evaluate import Normalize, confusion_counts, per_class_acc1, predict
from cvrun.engine.trainer import regime_facts
from cvrun.errors import UserError, require
from cvrun.models import build_model
from cvrun.models.registry import count_parameters
from cvrun.regimes.base import REGIMES, Regime, RegimeConfig

log = logging.getLogger("cvrun")

VOTE_TEMPERATURE = 0.07
# Similarities are computed for this many query images at a time: 512 x 50,000 floats is 100 MB.
QUERY_CHUNK = 512
FEATURES = ("backbone", "pixels")


@dataclass
class KnnConfig(RegimeConfig):
    name: str = "knn"
    k: int = 20  # neighbours that vote
    features: str = "backbone"  # backbone (of model.pretrained) or pixels
    weighted: bool = False  # votes weighted by exp(cosine similarity / 0.07)

    def check(self) -> None:
        require(self.k >= 1, f"regime.k (neighbours that vote) must be >= 1, got {self.k}")
        require(self.features in FEATURES, f"regime.features must be one of {', '.join(FEATURES)}, got {self.features}")


def check_k(k: int, memory: int) -> None:
    if k > memory:
        raise UserError(f"regime.k={k} neighbours, but the training set holds {memory} images to vote; "
                        f"set regime.k to at most {memory}")


@REGIMES.register("knn")
class Knn(Regime):
    config = KnnConfig
    not_distributed = "it takes no gradient steps"
    not_resumable = "it trains nothing; run it again"
    no_class_weights = "it trains nothing"
    no_weights = "it trains no weights to evaluate; its val and test accuracies are in its summary.json"
    result_columns = ("knn_k",)

    @classmethod
    def check_before_run(cls, cfg: Any) -> None:
        super().check_before_run(cfg)
        data = planned_splits(cfg.dataset)  # an image-folder tree's listing: the training set's size
        if data is not None:
            check_k(cfg.regime.k, len(data.train))

    def start(self) -> dict:
        """The run's life cycle without training: embed, vote on val and test, record."""
        self.record_sources()
        self.data = build_splits(self.cfg.dataset)
        check_k(self.cfg.regime.k, len(self.data.train))
        embed, params = self.embedding()
        self.embed = embed.to(self.device)
        self.summary_extra.update(train_samples=len(self.data.train),
                                  val_samples=0 if self.data.val is None else len(self.data.val))
        return self.trainer.record(params, regime_facts(self), self.vote)

    def embedding(self) -> tuple[nn.Module, int]:
        """The function from normalised images to the vectors compared, and its parameter count."""
        if self.cfg.regime.features == "pixels":
            return nn.Flatten(), 0
        self.require_pretrained()
        model = build_model(self.cfg.model, self.data.num_classes, self.data.image_size)
        return model.backbone, count_parameters(model.backbone)[0]

    def embedded(self, samples: Any) -> tuple[torch.Tensor, torch.Tensor]:
        normalize = Normalize(list(self.cfg.dataset.mean), list(self.cfg.dataset.std), self.device)
        features, labels = predict(self.embed, self.plain_loader(samples), normalize, self.dtype)
        return features.to(self.device), labels.to(self.device)

    def vote(self, summary: dict[str, Any]) -> None:
        r, data = self.cfg.regime, self.data
        memory, memory_labels = self.embedded(data.train)
        centre = memory.mean(dim=0)
        memory = F.normalize(memory - centre, dim=1)
        scores = {}
        for split, samples in (("val", data.val), ("test", data.test)):
            if samples is None or not len(samples):
                continue
            queries, labels = self.embedded(samples)
            votes = knn_votes(memory, memory_labels, F.normalize(queries - centre, dim=1), r.k, data.num_classes,
                              r.weighted)
            scores[split] = {"acc1": topk_accuracy(votes, labels, 1), "acc5": topk_accuracy(votes, labels, 5),
                             "samples": len(labels), "confusion": confusion_counts(votes, labels).cpu()}
            log.info("%s: k-NN (k=%d, %s) top-1 %.2f%%  top-5 %.2f%%  (%d images, %d in memory)", split, r.k,
                     r.features, scores[split]["acc1"], scores[split]["acc5"], len(labels), len(memory_labels))
        test, val = scores["test"], scores.get("val")
        summary.update(test_acc1=round(test["acc1"], 2), test_acc5=round(test["acc5"], 2),
                       test_samples=test["samples"],
                       test_per_class_acc1=per_class_acc1(test["confusion"], data.class_names),
                       best_val_acc1=val and round(val["acc1"], 2), best_epoch=None,
                       epochs_run=0, knn_k=r.k, knn_features=r.features, feature_dim=memory.shape[1])


def knn_votes(memory: torch.Tensor, memory_labels: torch.Tensor, queries: torch.Tensor, k: int,
              num_classes: int, weighted: bool) -> torch.Tensor:
    """Per-class vote totals (queries x classes) from each query's k most similar memory rows (k <= rows).

    All rows are unit vectors, so a matrix product gives cosine similarities; queries go
    in chunks so that the similarity matrix never holds more than QUERY_CHUNK rows.
    """
    votes = []
    for chunk in queries.split(QUERY_CHUNK):
        similarity, nearest = (chunk @ memory.T).topk(k, dim=1)
        weights = (similarity / VOTE_TEMPERATURE).exp() if weighted else torch.ones_like(similarity)
        votes.append(torch.zeros(len(chunk), num_classes, device=chunk.device)
                     .scatter_add_(1, memory_labels[nearest], weights))
    return torch.cat(votes)


def topk_accuracy(votes: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    top = votes.topk(min(k, votes.shape[1]), dim=1).indices
    return 100.0 * (top == labels[:, None]).any(dim=1).float().mean().item()
