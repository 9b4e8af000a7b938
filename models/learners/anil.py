"""ANIL (Raghu et al., 2020): MAML whose inner loop moves the head only.

The body embeds a task's inputs once; the inner loop runs on the head over those features,
second-order through the head's steps into the body. A task's phi is its head alone.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from models.learners.base import Params
from models.learners.inner import inner_loop
from models.learners.maml import MAML, InnerLR
from models.nets import task_statistics

HEAD_KEYS = ("head.weight", "head.bias")


class EmbeddingView(nn.Module):
    """net.embed as a module's forward, so that functional_call can run it with given params."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net.embed(x)  # type: ignore[operator]


def head_forward(head: Params, features: Tensor) -> Tensor:  # features [B, D] -> [B, n]
    return F.linear(features, head["head.weight"], head["head.bias"])


class ANIL(MAML):
    algorithm = "anil"

    def _embed(self, theta: Params, x: Tensor) -> Tensor:
        body = {f"net.{k}": v for k, v in theta.items() if k not in HEAD_KEYS}
        return functional_call(EmbeddingView(self.net), body, (x,))  # [B, D]

    def adapt_from(self, theta: Params, x: Tensor, y: Tensor, steps: int, lr: InnerLR, create_graph: bool) -> Params:
        features = self._embed(theta, x)  # [n_support, D]
        head = {k: theta[k] for k in HEAD_KEYS}
        return inner_loop(head_forward, head, features, y, self.loss, steps, lr, create_graph=create_graph)

    def predict_with(self, theta: Params, phi: Params, x: Tensor) -> Tensor:
        # A served task's phi also holds its support set's batch-norm statistics, for the body.
        return head_forward(phi, self._embed({**theta, **task_statistics(phi)}, x))
