"""Meta-SGD (Li et al., 2017): MAML whose inner learning rates are meta-learned too.

The rates are part of theta (saved in the model's state as `inner_lr.<param>`), one per
parameter entry (`lr_granularity` "parameter", the paper's) or one per parameter tensor
("tensor": per layer weight and bias). They start at `inner_lr`. A per-adaptation
`inner_lr` override scales all of them by inner_lr / config.inner_lr.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from models.episodes import ProblemSpec
from models.learners.base import Params
from models.learners.maml import MAML, InnerLR, MAMLConfig

LR_PREFIX = "inner_lr."


class MetaSGDConfig(MAMLConfig):
    lr_granularity: Literal["parameter", "tensor"] = "parameter"


class MetaSGD(MAML):
    algorithm = "metasgd"
    config_class = MetaSGDConfig

    def __init__(self, spec: ProblemSpec, config: MetaSGDConfig) -> None:
        super().__init__(spec, config)
        self.inner_lrs: dict[str, nn.Parameter] = {
            name: nn.Parameter(torch.full(p.shape if config.lr_granularity == "parameter" else (), config.inner_lr))
            for name, p in self.net.named_parameters()
        }
        self.optimizer = torch.optim.Adam(self.meta_parameters(), lr=config.meta_lr)

    def meta_parameters(self) -> list[Tensor]:
        return list(self.net.parameters()) + list(getattr(self, "inner_lrs", {}).values())

    def inner_lr(self, theta: Params, scale: float = 1.0) -> InnerLR:
        # Cut like theta when the task has fewer classes than n_way (head rows).
        return {k: (lr[: theta[k].shape[0]] if lr.dim() else lr) * scale for k, lr in self.inner_lrs.items()}

    def state(self) -> Params:
        lrs = {LR_PREFIX + k: v.detach().clone().contiguous() for k, v in self.inner_lrs.items()}
        return {**super().state(), **lrs}

    def load_state(self, tensors: Params) -> None:
        lrs = {k[len(LR_PREFIX) :]: v for k, v in tensors.items() if k.startswith(LR_PREFIX)}
        if set(lrs) != set(self.inner_lrs):
            raise ValueError("this Meta-SGD state lacks learned inner rates for some parameters; was it saved by metasgd?")
        super().load_state({k: v for k, v in tensors.items() if not k.startswith(LR_PREFIX)})
        with torch.no_grad():
            for k, v in lrs.items():
                self.inner_lrs[k].copy_(v)
