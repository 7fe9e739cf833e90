"""`regime=knn`: no gradient steps; each test image takes the vote of its k nearest training images.

Images are embedded by the backbone of `model.pretrained` (the standard k-NN
probe of a backbone's features) or, with regime.features=pixels, are their
own normalised pixels. Similarity is cosine after centring on the training
mean; votes are equal or, with regime.weighted=true, weighted by
exp(similarity / 0.07) as in the k-NN monitor of Wu et al. 2018.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvrun.data.splits import build_splits
from cvrun.engine.evaluate import Normalize, predict
from cvrun.engine.rundir import RunFolder, versions
from cvrun.engine.runtime import autocast_dtype, select_device
from cvrun.models import build_model
from cvrun.models.registry import count_parameters
from cvrun.regimes import register_regime
from cvrun.regimes.common import plain_loader, require_pretrained, split_sizes

log = logging.getLogger("cvrun")

VOTE_TEMPERATURE = 0.07
# Similarities are computed for this many query images at a time: 512 x 50,000 floats is 100 MB.
QUERY_CHUNK = 512


@register_regime("knn")
def knn(cfg: Any, run: RunFolder) -> dict:
    started = time.time()
    device = select_device(cfg.trainer.device)
    dtype = autocast_dtype(cfg.trainer.precision, device)
    data = build_splits(cfg.dataset)
    embed, params = embedding(cfg, data.num_classes, data.image_size)
    embed.to(device)
    normalize = Normalize(list(cfg.dataset.mean), list(cfg.dataset.std), device)
    run.update_summary(status="running", reason=None, seed=cfg.trainer.seed, params=params, trainable_params=0,
                       world_size=1, device=str(device), versions=versions(), class_names=data.class_names,
                       splits=data.record, **split_sizes(data))

    def embedded(samples):
        features, labels = predict(embed, plain_loader(cfg, samples, data.image_size, device), normalize, dtype)
        return features.to(device), labels.to(device)

    memory, memory_labels = embedded(data.train)
    centre = memory.mean(dim=0)
    memory = F.normalize(memory - centre, dim=1)
    scores = {}
    for split, samples in (("val", data.val), ("test", data.test)):
        if samples is None or not len(samples):
            continue
        queries, labels = embedded(samples)
        votes = knn_votes(memory, memory_labels, F.normalize(queries - centre, dim=1), cfg.regime.k,
                          data.num_classes, cfg.regime.weighted)
        scores[split] = {"acc1": topk_accuracy(votes, labels, 1), "acc5": topk_accuracy(votes, labels, 5),
                         "samples": len(labels)}
        log.info("%s: k-NN (k=%d, %s) top-1 %.2f%%  top-5 %.2f%%  (%d images, %d in memory)", split,
                 cfg.regime.k, cfg.regime.features, scores[split]["acc1"], scores[split]["acc5"], len(labels),
                 len(memory_labels))
    test, val = scores["test"], scores.get("val")
    return run.update_summary(
        status="completed", test_acc1=round(test["acc1"], 2), test_acc5=round(test["acc5"], 2),
        test_samples=test["samples"], best_val_acc1=val and round(val["acc1"], 2), best_epoch=None, epochs_run=0,
        knn_k=cfg.regime.k, knn_features=cfg.regime.features, feature_dim=memory.shape[1],
        wall_seconds=round(time.time() - started, 2))


def embedding(cfg: Any, num_classes: int, image_size: int) -> tuple[nn.Module, int]:
    """The function from normalised images to the vectors compared, and its parameter count."""
    if cfg.regime.features == "pixels":
        return nn.Flatten(), 0
    require_pretrained(cfg)
    model = build_model(cfg.model, num_classes, image_size)
    return model.backbone, count_parameters(model.backbone)[0]


def knn_votes(memory: torch.Tensor, memory_labels: torch.Tensor, queries: torch.Tensor, k: int,
              num_classes: int, weighted: bool) -> torch.Tensor:
    """Per-class vote totals (queries x classes) from each query's k most similar memory rows.

    All rows are unit vectors, so a matrix product gives cosine similarities; queries go
    in chunks so that the similarity matrix never holds more than QUERY_CHUNK rows.
    """
    k = min(k, len(memory_labels))
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
