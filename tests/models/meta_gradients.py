"""One MAML-family meta-step's meta-gradient in float64, for tests that compare two ways of
computing it (loop, threads, vmap; torch's derivatives or models.second_order's)."""

from __future__ import annotations

from typing import Any

import torch

from models.episodes import Episode, ProblemSpec
from models.learners import build_learner


def float64_meta_gradient(algorithm: str, spec: ProblemSpec, episodes: list[Episode], **config: Any) -> dict[str, torch.Tensor]:
    """The meta-parameters' gradients after one meta-step on `episodes`, theta left where it was:
    a Conv4 of 4 channels, 2 inner steps at 0.4 unless `config` says otherwise, seed 0."""
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # float64 throughout: conv biases before batch norm have ~0 gradients
    try:
        learner = build_learner(algorithm, spec, {"channels": 4, "inner_steps": 2, "inner_lr": 0.4, **config})
    finally:
        torch.set_default_dtype(default)
    episodes = [Episode(e.support_x.double(), e.support_y, e.query_x.double(), e.query_y) for e in episodes]
    for group in learner.optimizer.param_groups:
        group["lr"] = 0.0  # read the gradient without moving theta
    learner.meta_train_step(episodes)
    return {f"{i}": p.grad.clone() for i, p in enumerate(learner.meta_parameters())}
