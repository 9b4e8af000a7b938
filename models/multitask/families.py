"""Datasets made of a fixed set of named training tasks, and new tasks drawn beside them.

A multi-task family is a TaskFamily whose "train" split yields minibatches of its training
tasks (TaskEpisode, which says which task), and whose "val"/"test" splits yield episodes of
new tasks never trained on (for adaptation). `held_out(task, n)` gives fresh examples of a
training task, for scoring the model on the tasks it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from models.episodes import Episode, ProblemSpec, Split


@dataclass(frozen=True)
class TaskEpisode(Episode):
    """A minibatch of one training task; support and query are both training examples."""

    task: int = 0  # index into the family's task_names


@runtime_checkable
class MultiTaskFamily(Protocol):
    spec: ProblemSpec

    @property
    def task_names(self) -> list[str]: ...

    def sample(self, split: Split, n_tasks: int, generator: torch.Generator) -> list[Episode]: ...

    def held_out(self, task: int, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]: ...

    def task_labels(self, task: int) -> list[Any] | None:
        """Class names of a classification task in index order (None for regression)."""
        ...


def task_order(n_tasks: int, n_episodes: int, generator: torch.Generator) -> list[int]:
    """Task of each of n_episodes minibatches: every task once per round, rounds shuffled."""
    order: list[int] = []
    while len(order) < n_episodes:
        order += torch.randperm(n_tasks, generator=generator).tolist()
    return order[:n_episodes]
