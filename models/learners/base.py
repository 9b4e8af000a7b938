"""The learner contract every algorithm implements, so callers never branch on it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from models.episodes import Episode, ProblemSpec, TaskFamily

Params = dict[str, Tensor]


@dataclass(frozen=True)
class AdaptOptions:
    """Per-adaptation overrides; a learner without an inner loop ignores them."""

    inner_steps: int | None = None
    inner_lr: float | None = None


class Learner(ABC):
    """theta lives in the learner; phi (a task's adapted state) is a dict of plain tensors."""

    algorithm: ClassVar[str]
    config_class: ClassVar[type]

    def __init__(self, spec: ProblemSpec, config: Any) -> None:
        self.spec = spec
        self.config = config

    @abstractmethod
    def meta_train_step(self, episodes: list[Episode]) -> dict[str, float]:
        """One outer update of theta on a meta-batch; returns mean query loss (and accuracy)."""

    @abstractmethod
    def adapt(self, support_x: Tensor, support_y: Tensor, options: AdaptOptions | None = None) -> Params:
        """phi for one task from its support set. Classification labels are 0..n-1, n <= n_way."""

    @abstractmethod
    def predict(self, phi: Params, x: Tensor) -> Tensor:
        """Logits [B, n] (classification, n = the task's classes) or outputs [B, output_dim]."""

    @abstractmethod
    def state(self) -> Params:
        """theta as plain detached tensors (safetensors-ready)."""

    @abstractmethod
    def load_state(self, tensors: Params) -> None:
        """Restore theta written by state()."""

    # Shared by every learner.

    @property
    def device(self) -> torch.device:
        """Where theta lives (the device of the learner's first parameter)."""
        for value in vars(self).values():
            if isinstance(value, torch.nn.Module):
                for p in value.parameters():
                    return p.device
        return torch.device("cpu")

    def to(self, device: torch.device) -> Learner:
        """Move theta (every module the learner holds) to `device`; the optimizer follows."""
        for value in vars(self).values():
            if isinstance(value, torch.nn.Module):
                value.to(device)
        return self

    def training_batch(self, tasks: TaskFamily, size: int, generator: torch.Generator) -> Any:
        """What one outer update trains on: `size` episodes of the train split, unless the
        learner trains on something else (the fine-tuning baseline: a supervised batch)."""
        return tasks.sample("train", size, generator)

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        if self.spec.output == "classification":
            return F.cross_entropy(outputs, targets)
        return F.mse_loss(outputs, targets)

    def score(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        """Query metrics of one task: accuracy for classification, MSE for regression."""
        if self.spec.output == "classification":
            acc = (outputs.argmax(dim=-1) == targets).float().mean()
            return {"accuracy": float(acc)}
        return {"mse": float(F.mse_loss(outputs, targets))}

    def check_support(self, support_x: Tensor, support_y: Tensor) -> None:
        if support_x.shape[1:] != torch.Size(self.spec.input_shape):
            raise ValueError(
                f"support inputs have shape {tuple(support_x.shape[1:])}, "
                f"the model takes {self.spec.input_shape}"
            )
        if self.spec.output == "classification":
            n = int(support_y.max()) + 1 if support_y.numel() else 0
            if n > self.spec.n_way:
                raise ValueError(f"the support set has {n} classes, the model supports at most {self.spec.n_way}")
