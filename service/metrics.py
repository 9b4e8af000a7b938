"""Prometheus metrics of the API process, on its own registry (one per app), at GET /metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from store.db import Job, session_factory
from store.queue import ADAPT_QUEUE, TRAIN_QUEUE

if TYPE_CHECKING:
    from celery import Celery

    from service.predictor import Predictor

log = logging.getLogger(__name__)

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "fewshot_http_request_duration_seconds", "HTTP request latency by route template",
            ["method", "route", "status"], registry=self.registry, buckets=LATENCY_BUCKETS,
        )
        self.adaptation_seconds = Histogram(
            "fewshot_adaptation_seconds", "time from a task's creation to its adapted state, seen by the API",
            registry=self.registry, buckets=LATENCY_BUCKETS,
        )
        self.prediction_seconds = Histogram(
            "fewshot_prediction_seconds", "time to predict a batch in the API process",
            registry=self.registry, buckets=LATENCY_BUCKETS,
        )

    def watch(self, db_url: str, celery: Celery, predictor: Predictor) -> None:
        self.registry.register(_StateCollector(db_url, celery, predictor))

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """`app` wrapped to time every HTTP request by route template and status.

        Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs
        each request through a task group and memory streams, which cost more than a hot
        prediction itself (benchmarks/results/http_predictions.md).
        """
        histogram = self.request_seconds

        async def timed(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            start = time.perf_counter()
            status = [500]  # an exception before the response started is a 500 to the client

            async def send_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_status)
            finally:
                route: Any = scope.get("route")  # set by the router on the shared scope
                template = getattr(route, "path", None) or "unmatched"
                histogram.labels(scope["method"], template, str(status[0])).observe(time.perf_counter() - start)

        return timed


class _StateCollector(Collector):
    """Read at scrape time: jobs by status (SQL), queue depth (Redis), task-cache hits and misses."""

    def __init__(self, db_url: str, celery: Celery, predictor: Predictor) -> None:
        self.db_url, self.celery, self.predictor = db_url, celery, predictor

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("fewshot_jobs", "jobs by status (all tenants)", labels=["status"])
        try:
            with session_factory(self.db_url)() as session:
                counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
            for status in JOB_STATUSES:
                jobs.add_metric([status], counts.get(status, 0))
            yield jobs
        except Exception as exc:  # noqa: BLE001 - a scrape never fails the API
            log.warning("metrics: database unavailable (%s)", exc)
        depth = GaugeMetricFamily("fewshot_queue_depth", "messages waiting in each Celery queue", labels=["queue"])
        try:
            with self.celery.connection_for_read() as conn:
                client = conn.default_channel.client  # type: ignore[attr-defined]
                for queue in (TRAIN_QUEUE, ADAPT_QUEUE):
                    depth.add_metric([queue], client.llen(queue))
            yield depth
        except Exception as exc:  # noqa: BLE001
            log.warning("metrics: redis unavailable (%s)", exc)
        cache = self.predictor.states
        yield CounterMetricFamily("fewshot_task_cache_hits", "adapted task states served from memory", value=cache.hits)
        yield CounterMetricFamily("fewshot_task_cache_misses", "adapted task states loaded from the artifact store",
                                  value=cache.misses)
        yield GaugeMetricFamily("fewshot_task_cache_size", "adapted task states held in memory", value=len(cache))
