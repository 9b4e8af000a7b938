"""The inner loop, written once: meta-training, adaptation and evaluation all call it."""

from __future__ import annotations

from collections.abc import Callable, Collection

import torch
from torch import Tensor

from models.vectorized import in_vmap

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
    gradients are constants (first-order MAML); called with grad mode off (adaptation at
    serving time, under torch.no_grad), the result carries no graph at all. `lr` is a number
    or one tensor per adapted param (Meta-SGD); `adapt_keys` restricts which params move
    (ANIL adapts the head only).

    Eagerly the step gradients come from torch.autograd.grad; under vmap (tasks vectorized by
    models.vectorized) from torch.func.grad, the one that composes with vmap.
    """
    keys = list(adapt_keys) if adapt_keys is not None else list(params)
    if steps == 0:
        return dict(params)
    if in_vmap():
        return _inner_loop_func(forward, params, x, y, loss_fn, steps, lr, create_graph, keys)
    track = torch.is_grad_enabled()  # meta-training differentiates the result; serving does not
    # Fresh leaves where nothing upstream is differentiated: the step gradients are taken w.r.t. them.
    leaves = {k: params[k].detach().requires_grad_() for k in keys if not (track and params[k].requires_grad)}
    params = {**params, **leaves}
    for _ in range(steps):
        with torch.enable_grad():
            loss = loss_fn(forward(params, x), y)
            grads = torch.autograd.grad(
                loss, [params[k] for k in keys], create_graph=create_graph, materialize_grads=True
            )
        updated = {}
        for k, g in zip(keys, grads, strict=True):
            step_lr = lr[k] if isinstance(lr, dict) else lr
            updated[k] = params[k] - step_lr * g
            if not track:
                updated[k].requires_grad_()
        params = {**params, **updated}
    if not track:
        params = {k: v.detach() for k, v in params.items()}
    return params


def _inner_loop_func(
    forward: Forward,
    params: Params,
    x: Tensor,
    y: Tensor,
    loss_fn: LossFn,
    steps: int,
    lr: float | Params,
    create_graph: bool,
    keys: list[str],
) -> Params:
    """inner_loop with torch.func.grad, for vmap."""

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
