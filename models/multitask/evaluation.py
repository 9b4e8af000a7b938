"""Scoring a multi-task model on its own training tasks, with examples it never trained on."""

from __future__ import annotations

from typing import Any

import torch

from models.device import to_device
from models.learners.base import Learner
from models.multitask.families import MultiTaskFamily

HELD_OUT_SEED_OFFSET = 2_000_003


def training_task_metrics(learner: Learner, tasks: Any, examples: int, seed: int) -> dict[str, float]:
    """`mse/<task>` or `accuracy/<task>` on `examples` held-out points per training task, and
    their mean as `mse_training_tasks` / `accuracy_training_tasks`. Empty for a learner or a
    dataset without named training tasks."""
    if not isinstance(tasks, MultiTaskFamily):
        return {}
    states = learner.training_task_states()
    if not states:
        return {}
    metric = "accuracy" if learner.spec.output == "classification" else "mse"
    generator = torch.Generator().manual_seed(seed + HELD_OUT_SEED_OFFSET)
    metrics: dict[str, float] = {}
    for task, (name, phi) in enumerate(states.items()):
        x, y = to_device(tasks.held_out(task, examples, generator), learner.device)
        metrics[f"{metric}/{name}"] = learner.score(learner.predict(phi, x), y)[metric]
    metrics[f"{metric}_training_tasks"] = sum(metrics.values()) / len(metrics)
    return metrics
