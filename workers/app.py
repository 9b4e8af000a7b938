"""The Celery app of the workers: `celery -A workers.app worker -Q train,adapt`."""

from __future__ import annotations

import logging
import os

from celery.signals import worker_process_init

from store.db import init_db
from store.queue import make_celery
from store.settings import get_settings

settings = get_settings()
app = make_celery(settings)
app.conf.imports = ("workers.tasks",)


@worker_process_init.connect
def _configure_process(**_: object) -> None:
    """Runs in each pool process after the fork: torch, and CUDA if any, start only here."""
    import torch

    torch.set_num_threads(settings.torch_threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    init_db(settings.sqlalchemy_url)
    logging.getLogger(__name__).info("worker process %d ready, %d torch threads", os.getpid(), settings.torch_threads)
