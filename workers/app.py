"""The Celery app of the workers: `celery -A workers.app worker -Q train,adapt`."""

from __future__ import annotations

import logging
import os

from celery.signals import worker_process_init, worker_ready, worker_shutdown

from store.db import init_db
from store.queue import make_celery
from store.settings import get_settings
from workers.reconciler import PeriodicReconciler

settings = get_settings()
app = make_celery(settings)
app.conf.imports = ("workers.tasks",)


@worker_process_init.connect
def _configure_process(**_: object) -> None:
    """Runs in each pool process after the fork: torch, and CUDA if any, start only here."""
    import torch

    from models.device import resolve_device

    torch.set_num_threads(settings.torch_threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    device = resolve_device(settings.device)  # the first CUDA call of this worker, if any
    if device.type == "cuda":
        torch.cuda.set_device(device)
    init_db(settings.sqlalchemy_url)
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
