"""A worker's own end: within its grace when told to stop, and at once when `fewshot serve` is gone.

Celery's warm shutdown waits for the running task and for the broker; with Redis gone it waits
as long as its reconnection loop runs (minutes), which does not look at the shutdown flag. Here
a timer ends the process once the grace has passed, pool processes die with the worker's main
process (a parent-death signal), and a watchdog stops a worker whose supervisor died.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <sys/prctl.h>
ORPHAN_GRACE_S = 2.0  # a worker whose `fewshot serve` died: no one is waiting for its answers

_exit_scheduled = threading.Event()


def die_with_parent(death_signal: int = signal.SIGKILL, parent: int | None = None) -> None:
    """Linux: this process gets `death_signal` when its parent dies (at once if `parent` is already gone)."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, death_signal)
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), death_signal)


def exit_within(grace: float) -> None:
    """End this process and its pool processes `grace` seconds from now, unless it has ended by then.

    Safe in a signal handler (it only starts a thread); later calls keep the first deadline.
    """
    if _exit_scheduled.is_set():
        return
    _exit_scheduled.set()

    def expire() -> None:
        time.sleep(grace)
        log.error("worker still running %.1f s after it was told to stop (FEWSHOT_WORKER_GRACE_SECONDS); exiting now",
                  grace)
        kill_pool_processes()
        os._exit(1)

    threading.Thread(target=expire, name="shutdown-grace", daemon=True).start()


def kill_pool_processes() -> None:
    """SIGKILL every child process of this one (Celery's pool processes)."""
    from billiard.process import active_children

    for child in active_children():
        try:
            os.kill(child.pid, signal.SIGKILL)
        except (ProcessLookupError, TypeError):  # gone already, or never started (pid None)
            pass


def watch_parent(parent: int, on_orphaned: Callable[[], None], interval: float = 0.5) -> None:
    """Call `on_orphaned` once, in a thread, when this process's parent is no longer `parent`."""

    def loop() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        log.warning("the process that started this worker (pid %d) is gone; stopping", parent)
        on_orphaned()

    threading.Thread(target=loop, name="parent-watchdog", daemon=True).start()


def orphaned(supervisor_pid: int | None) -> bool:
    return supervisor_pid is not None and os.getppid() != supervisor_pid
