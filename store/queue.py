"""The Celery configuration the API (sender) and the workers (consumers) share.

Messages are JSON and carry ids only; tensors go through the artifact store or, for a new task's
support set, the task's row.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from store.settings import Settings

TRAIN_QUEUE = "train"
ADAPT_QUEUE = "adapt"
TRAIN_JOB = "fewshot.train_job"
ADAPT_TASK = "fewshot.adapt_task"
WARM_MODEL = "fewshot.warm_model"  # load a new model's learner in an adapt worker before its first task


def make_celery(settings: Settings) -> Celery:
    app = Celery("fewshot", broker=settings.broker_url, backend=settings.broker_url)
    # Every synchronous Redis call (publish, result, ping, control) gives up after `timeout` to
    # connect and `timeout` to read: a Redis that keeps its socket but stops answering (frozen,
    # failing over) raises within seconds and the API answers 503, where it would wait forever.
    # The workers' BRPOP runs in their event loop, outside these timeouts; kombu drops a BRPOP
    # connection whose reply is overdue (health_check_interval) and reconnects.
    timeout = settings.redis_timeout_seconds
    redis_timeouts = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_queues=(Queue(TRAIN_QUEUE), Queue(ADAPT_QUEUE)),
        task_default_queue=TRAIN_QUEUE,
        task_routes={
            TRAIN_JOB: {"queue": TRAIN_QUEUE}, ADAPT_TASK: {"queue": ADAPT_QUEUE}, WARM_MODEL: {"queue": ADAPT_QUEUE},
        },
        # A job is acknowledged when it ends, not when it starts, and comes back if the
        # process running it dies; the job ledger in SQL decides whether it runs again.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout, **redis_timeouts},
        broker_connection_timeout=timeout,  # kombu: the whole of one (re)connection attempt
        redis_socket_timeout=timeout,  # the result backend
        redis_socket_connect_timeout=timeout,
        result_backend_transport_options={"retry_policy": {"timeout": 2.0}},
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app
