"""A meta-batch's tasks across threads, one intra-op thread each (MAML's meta_batch_mode "threads").

A task's support set is a handful of images (5 for 5-way 1-shot): split over two intra-op
threads its kernels spend much of their time waiting for each other, where two tasks side by
side keep both cores busy. benchmarks/meta_training_speed.py, Conv4-64, 5-way 1-shot, 15
queries, meta-batch 32, torch at 2 threads on two cores (session 13): a second-order step 2.185 s
in threads against 2.612 s one task at a time, five inner steps 4.676 against 6.323 s.

torch's kernels release the GIL, so Python threads run tasks in parallel. The threads are this
module's own, started once per process (again after a fork: Celery's prefork pool forks its
workers), and each fixes its torch thread count at one when it starts: torch.set_num_threads
also sets the process's default, which a thread reads the first time it runs torch, so the
default goes back to the caller's count as soon as the threads have fixed theirs (a moment, once
per process), not after every meta-batch. A call from one of these threads runs its items in
that thread: the pool never waits on itself.

Memory: every thread holds one task's graph at a time, so N threads hold about N graphs (two
threads: 196-230 MB more at the peak than the loop in that benchmark).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from functools import partial
from typing import Any, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_local = threading.local()  # .in_pool: this thread is one of the pool's
_pool: _Threads | None = None


class _Threads:
    """Daemon threads at one torch thread each, fed from one queue of (future, call)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.size = 0
        self.jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]]] = queue.SimpleQueue()

    def grow(self, size: int) -> None:
        """At least `size` threads, each with its torch thread count fixed at one before this returns."""
        new = size - self.size
        if new <= 0:
            return
        caller = torch.get_num_threads()
        started = threading.Barrier(new + 1)
        for i in range(new):
            threading.Thread(target=self._serve, args=(started,), name=f"meta-batch-{self.size + i}", daemon=True).start()
        started.wait()
        torch.set_num_threads(caller)  # the process default back: threads that start torch later take it
        self.size = size

    def _serve(self, started: threading.Barrier) -> None:
        torch.set_num_threads(1)
        torch.get_num_threads()  # torch reads the default once per thread: this one's stays one from here
        _local.in_pool = True
        started.wait()
        while True:
            future, call = self.jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # noqa: BLE001 - the caller's to raise
                future.set_exception(exc)


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
    """[fn(item) for item in items], the calls side by side on the pool's threads (one torch
    thread each) with the caller's grad mode; results in order. Every call has ended when this
    returns or raises (the first call's exception, in order); calls not yet started when the
    caller is interrupted are cancelled. From a pool thread: the calls run one by one, here."""
    if getattr(_local, "in_pool", False):
        return [fn(item) for item in items]
    grad = torch.is_grad_enabled()

    def call(item: T) -> R:
        with torch.set_grad_enabled(grad):
            return fn(item)

    pool = _threads(len(items))
    futures: list[Future[R]] = []
    for item in items:
        futures.append(Future())
        pool.jobs.put((futures[-1], partial(call, item)))
    try:
        wait(futures)
    except BaseException:
        for f in futures:
            f.cancel()
        raise
    return [f.result() for f in futures]


def _threads(size: int) -> _Threads:
    global _pool
    with _lock:
        if _pool is None or _pool.pid != os.getpid():
            _pool = _Threads()
        _pool.grow(size)
        return _pool
