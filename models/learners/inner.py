"""The inner loop, written once: meta-training, adaptation and evaluation all call it."""

from __future__ import annotations

from collections.abc import Callable, Collection
from contextlib import nullcontext
from typing import Literal

import torch
from torch import Tensor

from models.second_order import second_order
from models.vectorized import in_vmap

Params = dict[str, Tensor]
Forward = Callable[[Params, Tensor], Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]
Gradients = Callable[[Params, Tensor, Tensor], Params]  # (params, x, y) -> d loss / d params, every param
Rule = Literal["sgd", "adam"]


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
    rule: Rule = "sgd",
    gradients: Gradients | None = None,
) -> Params:
    """`steps` gradient steps on loss_fn(forward(params, x), y); returns the adapted params.

    create_graph=True keeps the graph through every step, so the query loss of the result
    differentiates to second order w.r.t. the incoming params (MAML). With False the step
    gradients are constants (first-order MAML); called with grad mode off (adaptation at
    serving time, under torch.no_grad), the result carries no graph at all. `lr` is a number
    or one tensor per adapted param (Meta-SGD); `adapt_keys` restricts which params move
    (ANIL adapts the head only; the multi-task learner a new task's part of the network).

    `rule` is the update: plain gradient steps ("sgd", every learner's inner loop), or Adam
    with torch's defaults ("adam", the multi-task learner fitting a new task's phi: serving
    only, no graph through the steps, not under vmap).

    Eagerly the step gradients come from torch.autograd.grad; under vmap (tasks vectorized by
    models.vectorized) from torch.func.grad, the one that composes with vmap; with `gradients`
    (serving only: grad mode off, every param adapted, sgd) from that function, e.g.
    models.direct_grad's Conv4 gradients without autograd. The loop is the same either way.
    """
    keys = list(adapt_keys) if adapt_keys is not None else list(params)
    if steps == 0:
        return dict(params)
    vmapped = in_vmap()
    track = torch.is_grad_enabled()  # meta-training differentiates the result; serving does not
    serving = not (track or vmapped)
    if gradients is not None and not (serving and adapt_keys is None and rule == "sgd"):
        raise ValueError("direct gradients serve adaptation only: grad mode off, no vmap, every param, sgd")
    if not vmapped and gradients is None:  # fresh leaves where nothing upstream is differentiated: step gradients are taken w.r.t. them
        leaves = {k: params[k].detach().requires_grad_() for k in keys if not (track and params[k].requires_grad)}
        params = {**params, **leaves}
    update = _adam(params, keys, lr, create_graph, vmapped) if rule == "adam" else _sgd(lr, foreach=serving)
    for _ in range(steps):
        if gradients is not None:
            grads = gradients(params, x, y)
        else:
            grads = _gradients(forward, params, keys, x, y, loss_fn, create_graph, vmapped)
        updated = update(params, grads)
        if serving and gradients is None:  # serving: the next step differentiates w.r.t. the new values
            updated = {k: v.requires_grad_() for k, v in updated.items()}
        params = {**params, **updated}
    if serving:
        params = {k: v.detach() for k, v in params.items()}
    return params


def _gradients(
    forward: Forward, params: Params, keys: list[str], x: Tensor, y: Tensor, loss_fn: LossFn,
    create_graph: bool, vmapped: bool,
) -> Params:
    """d loss_fn(forward(params, x), y) / d params[k] for k in keys."""
    if vmapped:
        fast = {k: params[k] for k in keys}
        frozen = {k: v for k, v in params.items() if k not in fast}

        def support_loss(fast: Params, frozen: Params) -> Tensor:
            return loss_fn(forward({**frozen, **fast}, x), y)

        grads = torch.func.grad(support_loss)(fast, frozen)
        return {k: grads[k] if create_graph else grads[k].detach() for k in keys}
    with torch.enable_grad(), second_order() if create_graph else nullcontext():
        loss = loss_fn(forward(params, x), y)
        grads = torch.autograd.grad(loss, [params[k] for k in keys], create_graph=create_graph, materialize_grads=True)
    return dict(zip(keys, grads, strict=True))


Update = Callable[[Params, Params], Params]


def _sgd(lr: float | Params, foreach: bool) -> Update:
    """params - lr * grads; with `foreach` (serving: no graph, no vmap) in one or two fused calls over every param."""

    def update(params: Params, grads: Params) -> Params:
        if foreach:
            keys = list(grads)
            values, g = [params[k] for k in keys], [grads[k] for k in keys]
            if isinstance(lr, dict):
                new = torch._foreach_sub(values, torch._foreach_mul(g, [lr[k] for k in keys]))
            else:
                new = torch._foreach_add(values, g, alpha=-lr)
            return dict(zip(keys, new, strict=True))
        return {k: params[k] - (lr[k] if isinstance(lr, dict) else lr) * g for k, g in grads.items()}

    return update


def _adam(params: Params, keys: list[str], lr: float | Params, create_graph: bool, vmapped: bool) -> Update:
    if create_graph or vmapped or isinstance(lr, dict):
        raise ValueError("the adam inner rule adapts at serving time: one learning rate, no graph, no vmap")
    optimizer = torch.optim.Adam([params[k] for k in keys], lr=lr)

    def update(params: Params, grads: Params) -> Params:
        for k, g in grads.items():
            params[k].grad = g
        optimizer.step()  # in place, on the leaves it was built with
        return {k: params[k] for k in grads}

    return update
