"""The Celery app of the workers: `celery -A workers.app worker -Q train,adapt`."""

from __future__ import annotations

import logging
import os
import signal
import threading

from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutdown, worker_shutting_down

from store.db import init_db
from store.queue import make_celery
from store.settings import get_settings
from workers.lifecycle import ORPHAN_GRACE_S, die_with_parent, exit_within, orphaned, watch_parent
from workers.memory import keep_freed_memory
from workers.reconciler import PeriodicReconciler

settings = get_settings()
app = make_celery(settings)
app.conf.imports = ("workers.tasks",)

_main_pid: int | None = None  # the worker's main process, known to the pool processes it forks


@worker_init.connect
def _guard_main_process(**_: object) -> None:
    """In the worker's main process, before its pool starts: stop when `fewshot serve` is gone."""
    global _main_pid
    _main_pid = os.getpid()
    if settings.supervisor_pid is not None:
        watch_parent(settings.supervisor_pid, _stop_orphaned)


def _stop_orphaned() -> None:
    exit_within(ORPHAN_GRACE_S)
    os.kill(os.getpid(), signal.SIGTERM)  # Celery's warm shutdown, for as long as it is given


@worker_shutting_down.connect
def _exit_within_grace(**_: object) -> None:
    """Told to stop (SIGTERM, SIGINT): gone within the grace, even if the broker never answers again."""
    exit_within(ORPHAN_GRACE_S if orphaned(settings.supervisor_pid) else settings.worker_grace_seconds)


@worker_process_init.connect
def _configure_process(**_: object) -> None:
    """Runs in each pool process after the fork: torch, and CUDA if any, start only here."""
    die_with_parent(signal.SIGKILL, _main_pid)  # a pool process never outlives the worker's main process
    import torch

    from models.device import resolve_device
    from workers.pipelines import warm_process

    torch.set_num_threads(settings.torch_threads)
    if settings.malloc_tuned:
        keep_freed_memory()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    device = resolve_device(settings.device)  # the first CUDA call of this worker, if any
    if device.type == "cuda":
        torch.cuda.set_device(device)
    init_db(settings.sqlalchemy_url)
    # In a thread: Celery gives a pool process 4 s to come up, and the warm-up can take longer
    # on a busy machine; a task that arrives meanwhile waits on the same imports, no longer.
    threading.Thread(target=warm_process, args=(settings,), name="warm-up", daemon=True).start()
    logging.getLogger(__name__).info(
        "worker process %d ready on %s, %d torch threads", os.getpid(), device, settings.torch_threads
    )


_reconciler: PeriodicReconciler | None = None


@worker_ready.connect
def _start_reconciler(**_: object) -> None:
    """In the worker's main process: re-send lost work at start-up and then periodically."""
    global _reconciler
    init_db(settings.sqlalchemy_url)
    _reconciler = PeriodicReconciler(settings.sqlalchemy_url, app, settings.reconcile_seconds)
    _reconciler.start()


@worker_shutdown.connect
def _stop_reconciler(**_: object) -> None:
    if _reconciler is not None:
        _reconciler.stop()
