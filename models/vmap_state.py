"""Whether code runs under vmap over tasks (models.vectorized): a leaf module, so that networks
can ask without importing episodes."""

from __future__ import annotations

from contextvars import ContextVar

# True while vmap_query_outputs runs: code that has a faster eager path (BatchNorm's fused
# kernel, the inner loop's torch.autograd.grad) takes its torch.func-safe path instead.
IN_VMAP: ContextVar[bool] = ContextVar("in_vmap", default=False)


def in_vmap() -> bool:
    """Whether the caller runs under vmap_query_outputs (tasks vectorized by torch.func.vmap)."""
    return IN_VMAP.get()
