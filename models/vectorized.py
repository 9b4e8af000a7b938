"""A meta-batch as one `vmap` over tasks: the alternative to a Python loop over them.

Which is faster depends on the device (on 2 CPU threads the loop wins, see
benchmarks/meta_batch_modes.py); tests keep both giving the same meta-gradient. Every task of
a meta-batch must have the same support and query shapes (same ways, shots and queries).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from models.episodes import Episode
from models.vmap_state import IN_VMAP as _IN_VMAP
from models.vmap_state import in_vmap

__all__ = ["TaskOutputs", "in_vmap", "stack_episodes", "vmap_query_outputs", "vmap_tasks"]

TaskOutputs = Callable[[Tensor, Tensor, Tensor], Tensor]  # (support_x, support_y, query_x) -> query outputs


def stack_episodes(episodes: list[Episode]) -> Episode:
    """One Episode whose fields have a leading task dimension [T, ...]."""
    shapes = {(e.support_x.shape, e.support_y.shape, e.query_x.shape, e.query_y.shape) for e in episodes}
    if len(shapes) != 1:
        raise ValueError(
            "meta_batch_mode 'vmap' needs every task of a meta-batch to have the same support and "
            "query shapes; use meta_batch_mode 'threads' or 'loop' for tasks of mixed sizes"
        )
    return Episode(
        support_x=torch.stack([e.support_x for e in episodes]),  # [T, n_support, ...]
        support_y=torch.stack([e.support_y for e in episodes]),
        query_x=torch.stack([e.query_x for e in episodes]),  # [T, n_query, ...]
        query_y=torch.stack([e.query_y for e in episodes]),
    )


def vmap_query_outputs(task_outputs: TaskOutputs, batch: Episode) -> Tensor:
    """task_outputs over the tasks of a stacked batch at once: [T, n_query, out]."""
    return vmap_tasks(task_outputs, batch.support_x, batch.support_y, batch.query_x)


def vmap_tasks(fn: Callable[..., Any], *stacked: Tensor) -> Any:
    """torch.func.vmap(fn) over the leading task dimension of `stacked`, with in_vmap() true
    inside, so that the inner loop and batch norm take their torch.func-safe paths."""
    token = _IN_VMAP.set(True)
    try:
        return torch.func.vmap(fn)(*stacked)
    finally:
        _IN_VMAP.reset(token)
