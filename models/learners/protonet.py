"""Prototypical networks (Snell et al., 2017): a class is the mean embedding of its support set.

theta is the embedding network (Conv4 or MLP without its head); a task's phi is its
prototypes, nothing more; a query's logits are minus its squared Euclidean distances to them.
Batch normalisation keeps running statistics and uses them at adaptation and prediction, so
a single query image is scored as it would be in a batch.
"""

from __future__ import annotations

import dataclasses

import torch
from pydantic import Field
from torch import Tensor, nn

from models.augment import MAX_TTA_VIEWS
from models.config import Config
from models.episodes import Episode, ProblemSpec
from models.learners.base import MAX_CLASSES, AdaptOptions, AdaptRequest, Channels, Learner, MetaRate, Params, Widths
from models.learners.features import (
    CENTER,
    NORMALIZED_SCALE,
    batched_query_features,
    embed_views,
    finish_features,
    query_features,
    tta_views,
)
from models.nets import build_backbone


class ProtoNetConfig(Config):
    meta_lr: MetaRate = 1e-3  # Adam on the embedding
    lr_decay_every: int = Field(2000, ge=1, le=10_000_000)  # halve the learning rate every this many steps (the paper's schedule)
    hidden: Widths = [40, 40]  # MLP widths (vector inputs)
    channels: Channels = 64  # Conv4 width (image inputs)
    # Test-time augmentation of image tasks whose options leave it unset (null): each embedding the
    # mean over this many fixed affine views (0: off; vector inputs ignore it). RECIPE_DEFAULTS
    # turns it on for Omniglot, where 8 views took the one-shot-runs error from 8.75% to 4.0%.
    test_time_augmentation: int = Field(0, ge=0, le=MAX_TTA_VIEWS)


def squared_distances(x: Tensor, prototypes: Tensor) -> Tensor:  # [B, D], [n, D] -> [B, n]
    return (x.unsqueeze(1) - prototypes.unsqueeze(0)).pow(2).sum(-1)


def class_means(features: Tensor, labels: Tensor, n_classes: int) -> Tensor:  # [S, D], [S] -> [n, D]
    sums = torch.zeros(n_classes, features.shape[1], dtype=features.dtype, device=features.device)
    sums = sums.index_add_(0, labels, features)
    counts = torch.bincount(labels, minlength=n_classes).clamp(min=1).unsqueeze(1).to(features.dtype)
    return sums / counts


def _logits(phi: Params, features: Tensor) -> Tensor:
    """A task's logits for query features: minus squared distances to its prototypes (scaled when
    the features are unit length)."""
    logits = -squared_distances(features, phi["prototypes"])
    return logits * NORMALIZED_SCALE if CENTER in phi else logits


class ProtoNet(Learner):
    algorithm = "protonet"
    config_class = ProtoNetConfig

    def __init__(self, spec: ProblemSpec, config: ProtoNetConfig) -> None:
        if spec.output != "classification":
            raise ValueError("protonet classifies: train it on a classification dataset (omniglot, mnist)")
        super().__init__(spec, config)
        self.net = build_backbone(spec, config.hidden, config.channels, running_stats=True)
        self.net.head = nn.Identity()  # the embedding is the output
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.meta_lr)

    def _decay_learning_rate(self) -> None:
        """Halve meta_lr every lr_decay_every steps, counted by Adam's own step (checkpointed)."""
        first = next(iter(self.net.parameters()))
        done = int(self.optimizer.state[first]["step"]) if "step" in self.optimizer.state.get(first, {}) else 0
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.meta_lr * 0.5 ** (done // self.config.lr_decay_every)

    def meta_train_step(self, episodes: list[Episode]) -> dict[str, float]:
        self.net.train()
        self._decay_learning_rate()
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        for ep in episodes:
            n = int(ep.support_y.max()) + 1
            prototypes = class_means(self.net(ep.support_x), ep.support_y, n)  # [n, D]
            logits = -squared_distances(self.net(ep.query_x), prototypes)  # [n_query, n]
            loss = self.loss(logits, ep.query_y)
            (loss / len(episodes)).backward()
            for k, v in {"loss": float(loss.detach()), **self.score(logits.detach(), ep.query_y)}.items():
                totals[k] = totals.get(k, 0.0) + v / len(episodes)
        self.optimizer.step()
        return totals

    def adapt(self, support_x: Tensor, support_y: Tensor, options: AdaptOptions | None = None) -> Params:
        return self.adapt_many([AdaptRequest(support_x, support_y, options)])[0]

    def adapt_many(self, requests: list[AdaptRequest]) -> list[Params]:
        """One embedding pass over the support sets of every group of requests with the same input
        shape and options (batch norm uses running statistics: an input's embedding does not
        depend on its batch), then each task's prototypes."""
        for r in requests:
            self.check_support(r.support_x, r.support_y)
        resolved = [self._options(r.options, r.support_x) for r in requests]
        groups: dict[tuple[object, ...], list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((tuple(r.support_x.shape[1:]), r.support_x.dtype, resolved[i]), []).append(i)
        out: list[Params] = [{} for _ in requests]
        self.net.eval()
        with torch.no_grad():
            for members in groups.values():
                options = resolved[members[0]]
                xs = [requests[i].support_x for i in members]
                views = tta_views(options, xs[0])
                embedded = embed_views(self.net, torch.cat(xs), views).split([len(x) for x in xs])
                for i, features in zip(members, embedded, strict=True):
                    features, extra = finish_features(features, views, options)
                    y = requests[i].support_y
                    out[i] = {"prototypes": class_means(features, y, int(y.max()) + 1).contiguous(), **extra}
        return out

    def _options(self, options: AdaptOptions | None, support_x: Tensor) -> AdaptOptions:
        """The task's options, test_time_augmentation from the config where they leave it unset
        (image inputs only)."""
        options = options or AdaptOptions()
        if options.test_time_augmentation is None and self.config.test_time_augmentation and support_x.dim() == 4:
            options = dataclasses.replace(options, test_time_augmentation=self.config.test_time_augmentation)
        return options

    def predict(self, phi: Params, x: Tensor) -> Tensor:
        self.net.eval()
        with torch.no_grad():
            return _logits(phi, query_features(self.net, phi, x))

    @property
    def max_classes(self) -> int:
        """Any number of classes up to MAX_CLASSES: a task's classes come from its support set."""
        return MAX_CLASSES if self.spec.output == "classification" else 0

    def predict_many(self, requests: list[tuple[Params, Tensor]]) -> list[Tensor]:
        """One embedding pass over every request's inputs (batch norm uses running statistics:
        an input's embedding does not depend on its batch), one per number of test-time views
        among them, then each task's prototype distances."""
        self.net.eval()
        with torch.no_grad():
            features = batched_query_features(self.net, requests)
            return [_logits(phi, f) for f, (phi, _) in zip(features, requests, strict=True)]

    def state(self) -> Params:
        return {k: v.detach().clone().contiguous() for k, v in self.net.state_dict().items()}

    def load_state(self, tensors: Params) -> None:
        self.net.load_state_dict(tensors, strict=True)
