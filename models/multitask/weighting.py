"""How per-task losses add up (sum_i w_i L_i), and per-task scaling of regression targets."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

Weighting = Literal["fixed", "uncertainty"]


class LossWeighting(nn.Module):
    """`fixed`: sum_i w_i L_i with the job's weights. `uncertainty` (Kendall, Gal & Cipolla,
    2018): a log-variance s_i per task learned with the model; regression adds
    0.5 exp(-s_i) L_i + 0.5 s_i, classification exp(-s_i) L_i + 0.5 s_i. Each s_i starts at
    log L_i of the task's first minibatch (its optimum there): from 0, Adam's small steps take
    thousands of updates to reach tasks whose losses are orders of magnitude apart."""

    def __init__(self, num_tasks: int, kind: Weighting, weights: list[float], regression: bool) -> None:
        super().__init__()
        self.kind = kind
        self.regression = regression
        self.register_buffer("fixed", torch.tensor(weights or [1.0] * num_tasks, dtype=torch.float32))  # [T]
        self.log_var = nn.Parameter(torch.zeros(num_tasks), requires_grad=kind == "uncertainty")  # [T]
        self.register_buffer("started", torch.zeros(num_tasks, dtype=torch.bool))  # [T] s_i initialised

    def combine(self, losses: dict[int, Tensor]) -> Tensor:
        total = torch.zeros(())
        for task, loss in losses.items():
            if self.kind == "uncertainty":
                if not self.started[task]:
                    with torch.no_grad():
                        self.log_var[task] = torch.log(loss.detach().clamp(min=1e-8))
                        self.started[task] = True
                s = self.log_var[task]
                precision = torch.exp(-s) * (0.5 if self.regression else 1.0)
                total = total + precision * loss + 0.5 * s
            else:
                total = total + self.fixed[task] * loss
        return total

    def effective_weight(self, task: int) -> float:
        if self.kind == "uncertainty":
            return float(torch.exp(-self.log_var[task].detach()) * (0.5 if self.regression else 1.0))
        return float(self.fixed[task])


class TargetScaler(nn.Module):
    """Running mean and standard deviation of each task's regression targets, so that every
    task trains on targets of unit scale and no task's magnitude drowns the others."""

    def __init__(self, num_tasks: int, output_dim: int) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros(num_tasks))  # [T]
        self.register_buffer("mean", torch.zeros(num_tasks, output_dim))  # [T, O]
        self.register_buffer("m2", torch.zeros(num_tasks, output_dim))  # [T, O] sum of squared deviations

    @torch.no_grad()
    def update(self, task: int, y: Tensor) -> None:
        """Chan et al.'s parallel update of the running moments with a batch y [n, O]."""
        n_b = y.shape[0]
        n_a = self.count[task]
        mean_b = y.mean(0)
        delta = mean_b - self.mean[task]
        total = n_a + n_b
        self.mean[task] += delta * n_b / total
        self.m2[task] += ((y - mean_b) ** 2).sum(0) + delta**2 * n_a * n_b / total
        self.count[task] = total

    def stats(self, task: int) -> tuple[Tensor, Tensor]:
        """(mean [O], std [O]) of a training task's targets."""
        var = self.m2[task] / self.count[task].clamp(min=1)
        return self.mean[task].clone(), var.sqrt().clamp(min=1e-3)


def support_stats(y: Tensor, fallback_std: Tensor) -> tuple[Tensor, Tensor]:
    """(mean [O], std [O]) of a new task's support targets y [n, O]; with fewer than two
    points the std of the training tasks stands in."""
    if y.shape[0] < 2:
        return y.mean(0), fallback_std
    return y.mean(0), y.std(0, unbiased=False).clamp(min=1e-3)
