"""The inner loop, written once: meta-training, adaptation and evaluation all call it."""

from __future__ import annotations

from collections.abc import Callable, Collection

import torch
from torch import Tensor

Params = dict[str, Tensor]
Forward = Callable[[Params, Tensor], Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]


def inner_loop(
    forward: Forward,
    params: Params,
    x: Tensor,
    y: Tensor,
    loss_fn: LossFn,
    steps: int,
    lr: float | Params,
    *,
    create_graph: bool,
    adapt_keys: Collection[str] | None = None,
) -> Params:
    """`steps` gradient steps on loss_fn(forward(params, x), y); returns the adapted params.

    create_graph=True keeps the graph through every step, so the query loss of the result
    differentiates to second order w.r.t. the incoming params (MAML). With False the step
    gradients are constants (first-order MAML; adaptation at serving time, run under
    torch.no_grad, builds no graph at all). `lr` is a number or one tensor per adapted param
    (Meta-SGD); `adapt_keys` restricts which params move (ANIL adapts the head only).
    """
    keys = list(adapt_keys) if adapt_keys is not None else list(params)

    def support_loss(fast: Params, frozen: Params) -> Tensor:
        return loss_fn(forward({**frozen, **fast}, x), y)

    for _ in range(steps):
        fast = {k: params[k] for k in keys}
        frozen = {k: v for k, v in params.items() if k not in fast}
        grads = torch.func.grad(support_loss)(fast, frozen)
        updated = {}
        for k, g in grads.items():
            step_lr = lr[k] if isinstance(lr, dict) else lr
            updated[k] = fast[k] - step_lr * (g if create_graph else g.detach())
        params = {**params, **updated}
    return params
