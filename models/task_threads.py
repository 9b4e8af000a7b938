"""A meta-batch's tasks across threads, one intra-op thread each (MAML's meta_batch_mode "threads").

A task's support set is a handful of images (5 for 5-way 1-shot): split over two intra-op
threads its kernels spend much of their time waiting for each other, where two tasks side by
side keep both cores busy. Conv4-64, 5-way 1-shot, 15 queries, meta-batch 32, torch at 2
threads on two cores (an ad-hoc run, session 13): a second-order step 2.72-2.81 s task by task,
2.23-2.41 s two tasks at a time; first order 1.90-1.93 against 1.67-1.75 s.
benchmarks/meta_training_speed.py measures it against the libraries.

torch's kernels release the GIL, so Python threads run tasks in parallel; each sets its own
OpenMP and MKL thread count to one, and the calling thread's count is restored after. The pool
is per process (made again after a fork: Celery's prefork pool forks its workers).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, threads, pool)


def task_threads(n_tasks: int, device: torch.device) -> int:
    """How many threads a meta-batch of n_tasks on `device` runs on: on the CPU, torch's intra-op
    threads, at most one a task; 1 elsewhere (a CUDA stream is not shared this way)."""
    if device.type != "cpu":
        return 1
    return max(1, min(torch.get_num_threads(), n_tasks))


def split(n: int, parts: int) -> list[range]:
    """0..n-1 in `parts` contiguous ranges of sizes differing by at most one, in order."""
    size, extra = divmod(n, parts)
    bounds = [0]
    for i in range(parts):
        bounds.append(bounds[-1] + size + (i < extra))
    return [range(a, b) for a, b in zip(bounds, bounds[1:], strict=False)]


def map_in_threads(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """[fn(item) for item in items], each call in its own thread at one torch thread, with the
    caller's grad mode; results in order. An exception in any call is raised here (after all end)."""
    threads = torch.get_num_threads()
    grad = torch.is_grad_enabled()

    def run(item: T) -> R:
        torch.set_num_threads(1)
        with torch.set_grad_enabled(grad):
            return fn(item)

    futures = [_executor(len(items)).submit(run, item) for item in items]
    try:
        return [f.result() for f in futures]
    finally:
        for f in futures:  # every call has ended before the thread count goes back
            f.exception()
        torch.set_num_threads(threads)


def _executor(size: int) -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None or _pool[0] != os.getpid() or _pool[1] < size:
            if _pool is not None and _pool[0] == os.getpid():
                _pool[2].shutdown(wait=False)
            _pool = (os.getpid(), size, ThreadPoolExecutor(size, thread_name_prefix="meta-batch"))
        return _pool[2]
