"""The sinusoid regression family of the MAML paper (Finn et al., 2017, section 5.1)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from models.episodes import Episode, ProblemSpec, Split, SupervisedBatch
from models.modality import VectorModality


@dataclass(frozen=True)
class SinusoidTasks:
    """y = A sin(x - phase), A ~ U[0.1, 5], phase ~ U[0, pi], x ~ U[-5, 5].

    The family is infinite; splits differ only in the generator the caller passes, and the
    training pipeline seeds meta-test generators apart from the meta-training one.
    """

    k_support: int = 10
    k_query: int = 10
    amplitude: tuple[float, float] = (0.1, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)

    @property
    def spec(self) -> ProblemSpec:
        return ProblemSpec.of(VectorModality((1,)), "regression", output_dim=1)

    def sample(self, split: Split, n_tasks: int, generator: torch.Generator) -> list[Episode]:
        return [self._episode(generator) for _ in range(n_tasks)]

    def split_names(self) -> None:
        """None: every split draws fresh waves; there are no classes to split."""
        return None

    def supervised_batch(self, size: int, generator: torch.Generator) -> SupervisedBatch:
        """`size` points, each of its own random wave: the pretraining data of the MAML paper's
        baseline (one network regressing all tasks at once)."""
        lo, hi = self.x_range
        amp = self.amplitude[0] + (self.amplitude[1] - self.amplitude[0]) * torch.rand(size, 1, generator=generator)
        phase = self.phase[0] + (self.phase[1] - self.phase[0]) * torch.rand(size, 1, generator=generator)
        x = lo + (hi - lo) * torch.rand(size, 1, generator=generator)  # [B, 1]
        return SupervisedBatch(x, amp * torch.sin(x - phase), 0)

    def draw_wave(self, generator: torch.Generator) -> tuple[float, float]:
        amp = _uniform(self.amplitude, generator)
        phase = _uniform(self.phase, generator)
        return amp, phase

    def points(
        self, amp: float, phase: float, n: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self.x_range
        x = lo + (hi - lo) * torch.rand(n, 1, generator=generator)  # [n, 1]
        return x, amp * torch.sin(x - phase)

    def _episode(self, generator: torch.Generator) -> Episode:
        amp, phase = self.draw_wave(generator)
        sx, sy = self.points(amp, phase, self.k_support, generator)
        qx, qy = self.points(amp, phase, self.k_query, generator)
        return Episode(sx, sy, qx, qy)


def _uniform(bounds: tuple[float, float], generator: torch.Generator) -> float:
    lo, hi = bounds
    return lo + (hi - lo) * float(torch.rand((), generator=generator))
