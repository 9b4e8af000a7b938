"""glibc's heap settings for processes that run torch: a leaf module, so that benchmarks and
tests can apply the workers' settings without starting the Celery app."""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>


def keep_freed_memory() -> bool:
    """glibc: serve blocks up to 32 MB from the heap and never trim it, so that the activations
    of every meta-step reuse memory instead of mapping and faulting in fresh pages (the same as
    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=<large>, set after start-up). False
    where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024) and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):
        return False
