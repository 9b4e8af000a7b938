"""glibc's heap settings for processes that run torch: a leaf module, so that benchmarks and
tests can apply the workers' settings without starting the Celery app."""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # mallopt parameters, <malloc.h>
MMAP_THRESHOLD = 32 * 1024 * 1024  # the largest mmap threshold glibc accepts
TRIM_THRESHOLD = 2**31 - 1  # never reached: the heap is never trimmed
HEAP_MAX = 64 * 1024 * 1024  # glibc's largest heap of a thread's arena on 64-bit (2 * the largest mmap threshold)
# The same settings as environment variables, for a process started with them (benchmarks' children).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
              "MALLOC_TOP_PAD_": str(HEAP_MAX)}


def keep_freed_memory() -> bool:
    """glibc: serve blocks up to 32 MB from the heap and never trim it, so that the activations
    of every meta-step reuse memory instead of mapping and faulting in fresh pages (the same as
    MALLOC_ENV, set after start-up). The top pad is for threads (meta_batch_mode "threads"): each has its own
    arena of heaps of up to 64 MB, and glibc unmaps a heap that has become empty whatever the trim
    threshold, unless the pad asks for that much room: two second-order meta-steps at 2 threads
    faulted 52,000-55,000 times without it, 4,400-10,000 with it (tests/workers/test_malloc.py).
    False where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
                    and libc.mallopt(M_TOP_PAD, HEAP_MAX))
    except (OSError, AttributeError):
        return False
