"""The synthetic multi-task regression data of the MMoE paper (Ma et al., KDD 2018, sec. 4.1).

Orthonormal u1, u2 in R^d; w1 = c u1, w2 = c (p u1 + sqrt(1 - p^2) u2); x ~ N(0, I);
y = w^T x + sum_{i=1..m} sin(alpha_i w^T x + beta_i) + N(0, 0.01^2), with c = 1, m = 10,
alpha_i = i, beta_i = i^2. The cosine similarity p of the task weights sets how related the
tasks are. With more than two tasks, task t >= 2 takes its own orthonormal u_t, so every task
has cosine p with task 1 (and p^2 with each other); with two tasks this is the paper's
generator exactly. New tasks (for adaptation) draw u_new at random orthogonal to u1.

`task_scales` multiplies each training task's targets (tasks of different magnitudes).
Each training task has a fixed training set of `examples_per_task` points, drawn once from
the seed; held-out points of a training task and new tasks come from the caller's generator.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from models.episodes import Episode, ProblemSpec, Split
from models.modality import VectorModality
from models.multitask.families import TaskEpisode, task_order

N_SINES = 10  # m
SCALE = 1.0  # c
NOISE_STD = 0.01


def task_targets(w: Tensor, x: Tensor, noise: Tensor) -> Tensor:
    """y = w^T x + sum_i sin(i * w^T x + i^2) + noise; w [d], x [n, d], noise [n] -> [n, 1]."""
    proj = x @ w  # [n]
    i = torch.arange(1, N_SINES + 1, dtype=x.dtype)  # [m]
    sines = torch.sin(proj[:, None] * i + i**2).sum(dim=1)  # [n]
    return (proj + sines + noise)[:, None]


class MtlSyntheticTasks:
    """`num_tasks` regression tasks of relatedness p, plus new tasks of the same relatedness."""

    def __init__(
        self,
        num_tasks: int = 2,
        relatedness: float = 0.5,
        input_dim: int = 100,
        examples_per_task: int = 1000,
        k_support: int = 10,
        k_query: int = 54,
        seed: int = 0,
        task_scales: list[float] | None = None,
    ) -> None:
        if not 1 <= num_tasks < input_dim:
            raise ValueError(f"num_tasks must be between 1 and input_dim - 1 ({input_dim - 1})")
        if not -1.0 <= relatedness <= 1.0:
            raise ValueError("relatedness (p, the cosine of the task weights) must be in [-1, 1]")
        self.num_tasks, self.relatedness, self.input_dim = num_tasks, relatedness, input_dim
        self.k_support, self.k_query = k_support, k_query
        self.scales = torch.tensor(task_scales or [1.0] * num_tasks)  # [T] targets of task t times scales[t]
        if len(self.scales) != num_tasks:
            raise ValueError(f"task_scales needs one factor per task ({num_tasks})")
        gen = torch.Generator().manual_seed(seed)
        basis, _ = torch.linalg.qr(torch.randn(input_dim, num_tasks, generator=gen))  # [d, T] orthonormal
        self.u1 = basis[:, 0]
        self.weights = torch.stack([self._weight(basis[:, t]) if t else SCALE * self.u1 for t in range(num_tasks)])  # [T, d]
        self.train_x = torch.randn(num_tasks, examples_per_task, input_dim, generator=gen)  # [T, N, d]
        noise = NOISE_STD * torch.randn(num_tasks, examples_per_task, generator=gen)
        self.train_y = torch.stack([task_targets(self.weights[t], self.train_x[t], noise[t]) for t in range(num_tasks)])
        self.train_y *= self.scales[:, None, None]

    def _weight(self, u: Tensor) -> Tensor:
        p = self.relatedness
        return SCALE * (p * self.u1 + math.sqrt(max(1.0 - p * p, 0.0)) * u)

    @property
    def spec(self) -> ProblemSpec:
        return ProblemSpec.of(VectorModality((self.input_dim,)), "regression", output_dim=1)

    @property
    def task_names(self) -> list[str]:
        return [f"task_{t + 1}" for t in range(self.num_tasks)]

    def task_labels(self, task: int) -> None:
        return None

    def split_names(self) -> None:
        """None: meta-train is the fixed training tasks (task_names), meta-val and meta-test draw
        new task weights every time; there are no classes to split."""
        return None

    def points(self, w: Tensor, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x = torch.randn(n, self.input_dim, generator=generator)  # [n, d]
        return x, task_targets(w, x, NOISE_STD * torch.randn(n, generator=generator))

    def held_out(self, task: int, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Fresh points of training task `task` (never in its training set)."""
        x, y = self.points(self.weights[task], n, generator)
        return x, y * self.scales[task]

    def new_task_weight(self, generator: torch.Generator) -> Tensor:
        u = torch.randn(self.input_dim, generator=generator)
        u = u - (u @ self.u1) * self.u1  # orthogonal to u1
        return self._weight(u / u.norm())

    def sample(self, split: Split, n_tasks: int, generator: torch.Generator) -> list[Episode]:
        if split == "train":
            return [self._train_episode(t, generator) for t in task_order(self.num_tasks, n_tasks, generator)]
        episodes: list[Episode] = []
        for _ in range(n_tasks):
            w = self.new_task_weight(generator)
            sx, sy = self.points(w, self.k_support, generator)
            qx, qy = self.points(w, self.k_query, generator)
            episodes.append(Episode(sx, sy, qx, qy))
        return episodes

    def _train_episode(self, task: int, generator: torch.Generator) -> TaskEpisode:
        n = self.train_x.shape[1]
        idx = torch.randint(n, (self.k_support + self.k_query,), generator=generator)
        x, y = self.train_x[task, idx], self.train_y[task, idx]
        k = self.k_support
        return TaskEpisode(x[:k], y[:k], x[k:], y[k:], task=task)
