"""Adaptation options of the metric learners (ProtoNet, the fine-tuning baseline) on features:
test-time augmentation (an input's embedding is the mean over fixed affine views of it) and
SimpleShot's normalisation (features centred, here on the support set's mean, then scaled to
unit length). Both act per input, so a prediction never depends on the rest of its request;
phi records what was used, so predict() repeats it."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from models.augment import MAX_TTA_VIEWS, test_time_views, warp
from models.learners.base import AdaptOptions, Params

TTA = "tta_views"  # phi keys
CENTER = "feature_center"
NORMALIZED_SCALE = 10.0  # logits of unit-length features: distances in [0, 4], scaled so probabilities are not flat


def tta_views(options: AdaptOptions | None, x: Tensor) -> int:
    views = (options.test_time_augmentation if options is not None else None) or 0
    if views and x.dim() != 4:
        raise ValueError("test_time_augmentation applies to image inputs only")
    if not 0 <= views <= MAX_TTA_VIEWS:
        raise ValueError(f"test_time_augmentation must be between 0 (off) and {MAX_TTA_VIEWS} views")
    return views


def embed_views(embed: Callable[[Tensor], Tensor], x: Tensor, views: int) -> Tensor:
    """embed(x), or with views > 1 the mean of embed over the fixed test-time views of x."""
    if views <= 1:
        return embed(x)
    return torch.stack([embed(warp(x, m)) for m in test_time_views(views)]).mean(0)


def adapted_features(embed: Callable[[Tensor], Tensor], x: Tensor, options: AdaptOptions | None) -> tuple[Tensor, Params]:
    """Support features under the options, and the phi entries that make predict() match."""
    views = tta_views(options, x)
    return finish_features(embed_views(embed, x, views), views, options)


def finish_features(features: Tensor, views: int, options: AdaptOptions | None) -> tuple[Tensor, Params]:
    """adapted_features from one task's support embeddings (embed_views of its inputs), so that a
    batch of tasks can be embedded in one pass and finished task by task."""
    extra: Params = {}
    if views > 1:
        extra[TTA] = torch.tensor(views)
    if options is not None and options.feature_normalization:
        center = features.mean(0)
        extra[CENTER] = center.contiguous()
        features = normalize(features, center)
    return features, extra


def query_features(embed: Callable[[Tensor], Tensor], phi: Params, x: Tensor) -> Tensor:
    views = int(phi[TTA]) if TTA in phi else 0
    features = embed_views(embed, x, views)
    return normalize(features, phi[CENTER]) if CENTER in phi else features


def batched_query_features(embed: Callable[[Tensor], Tensor], requests: list[tuple[Params, Tensor]]) -> list[Tensor]:
    """query_features(embed, phi, x) of every (phi, x), with one embedding pass per number of
    test-time views among the requests (embeddings are per input: batch norm on running statistics)."""
    groups: dict[int, list[int]] = {}
    for i, (phi, _) in enumerate(requests):
        groups.setdefault(int(phi[TTA]) if TTA in phi else 0, []).append(i)
    out: list[Tensor] = [torch.empty(0)] * len(requests)
    for views, members in groups.items():
        xs = [requests[i][1] for i in members]
        for i, features in zip(members, embed_views(embed, torch.cat(xs), views).split([len(x) for x in xs]), strict=True):
            phi = requests[i][0]
            out[i] = normalize(features, phi[CENTER]) if CENTER in phi else features
    return out


def normalize(features: Tensor, center: Tensor) -> Tensor:
    return F.normalize(features - center, dim=-1, eps=1e-8)
