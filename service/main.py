"""create_app: the FastAPI application, one router per resource."""

from __future__ import annotations

import gc
import hmac
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import torch
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.adaptation_waiter import AdaptationWaiter
from service.admission import Admission, SharedTenantSlots
from service.auth import declare_security
from service.console import install_console
from service.errors import Unauthorized, error_response, install_error_handlers
from service.fastpath import PREDICTIONS_PATH, TASKS_PATH, fast_predictions, fast_task_creation
from service.hot import HotRows
from service.metrics import ApiMetrics
from service.predictor import Predictor
from service.ratelimit import RateLimiter
from service.routes import datasets, health, job_history, jobs, models, tasks
from store.artifacts import artifact_store
from store.db import init_db, with_timeouts
from store.queue import make_celery
from store.settings import Settings, get_settings

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
UPLOAD_PATHS = ("/v1/datasets",)  # these take bodies up to max_upload_bytes
# JSON bodies may hold max_request_numbers numbers plus this many other values (items, labels,
# keys): a valid body has fewer commas than values, so its commas bound what parsing it costs
# (~56 bytes a value) before a byte of it is parsed.
SEPARATOR_SLACK = 65_536

TAGS = [
    {"name": "health", "description": "liveness and readiness"},
    {"name": "datasets", "description": "built-in datasets and uploads (npz, or a zip of class folders of images)"},
    {"name": "jobs", "description": "meta-training jobs: submit, follow (events, checkpoints), cancel"},
    {"name": "models", "description": "meta-trained models"},
    {"name": "tasks", "description": "tasks adapted to a support set, and their predictions"},
]


def settle_heap() -> None:
    """Import now what the first request would, then put every object alive out of the cyclic
    collector's sight. An API process holds about 300,000 objects after start-up and 800 more
    modules (torch._dynamo, sympy: every torch optimizer imports them, so the first model a
    process loads did) once it has served; each full collection scanned them all, a 150-240 ms
    pause of every request in flight, several a minute under load (benchmarks/RESULTS.md, "Hot
    predictions"). Frozen, they are never scanned again; what comes after is. For a process that
    serves one app for its life (`fewshot serve`, `fewshot api`): frozen objects that become
    cyclic garbage later are never freed, so tests that build many apps do not call it."""
    import torch._dynamo  # noqa: F401

    gc.collect()
    gc.freeze()


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    shared = app.state.admission.shared
    if shared is not None:
        shared.open_async()
    yield
    await app.state.adaptation_waiter.close()
    if shared is not None:
        await shared.aclose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(settings.torch_threads)
    init_db(settings.sqlalchemy_url)  # migrations without the request path's statement timeout
    # Resolved once, not per request (the property resolves a path); on PostgreSQL with the connect
    # and statement timeouts of the request path (a stalled database answers 503, not never).
    db_url = with_timeouts(settings.sqlalchemy_url, settings.db_statement_timeout_ms, settings.db_connect_timeout_seconds)

    app = FastAPI(
        title="fewshot", version=API_VERSION, openapi_tags=TAGS, lifespan=_lifespan,
        docs_url=None, redoc_url=None,  # served by install_console, with local assets
        description="Few-shot adaptation as a service. Every /v1 route takes `Authorization: Bearer <API key>` "
                    "once any key exists; errors are `{\"error\": {\"type\", \"code\", \"message\", \"param\"}}`.",
    )
    app.state.settings = settings
    app.state.db_url = db_url
    app.state.artifacts = artifact_store(settings)
    app.state.celery = make_celery(settings)
    app.state.predictor = Predictor(
        app.state.artifacts, settings.task_cache_size,
        batch_window=settings.predict_batch_window_ms / 1000, max_batch=settings.predict_max_batch,
    )
    app.state.hot = HotRows(db_url, settings.redis_url, settings.hot_cache_ttl_seconds, settings.hot_cache_size)
    app.state.hot.on_task_gone = app.state.predictor.forget_task
    app.state.hot.on_model_gone = app.state.predictor.forget_model
    app.state.rate_limiter = RateLimiter(settings.redis_url, settings.rate_limit_per_minute)
    app.state.metrics = ApiMetrics()
    shared_slots = SharedTenantSlots(settings.redis_url, settings.adapt_wait_seconds + 60) if settings.redis_url else None
    app.state.admission = Admission(settings.max_inflight_adaptations, settings.max_inflight_adaptations_per_tenant,
                                    shared_slots)
    app.state.adaptation_waiter = AdaptationWaiter(settings.redis_url, settings.redis_timeout_seconds)  # listens from the first wait on
    app.state.metrics.watch(db_url, app.state.celery, app.state.predictor)
    install_error_handlers(app)

    predictions_route = next(r for r in tasks.router.routes if getattr(r, "path", None) == PREDICTIONS_PATH)
    create_route = next(
        r for r in tasks.router.routes if getattr(r, "path", None) == TASKS_PATH and "POST" in getattr(r, "methods", ())
    )
    app.add_middleware(fast_task_creation, fastapi_app=app, route=create_route, answer=tasks.task_answer)
    # Outside it, so that predictions (the hot path) are answered by the first handler they meet;
    # both inside the body limit and the metrics.
    app.add_middleware(fast_predictions, fastapi_app=app, route=predictions_route)
    app.add_middleware(_body_size_limit, settings=settings)
    app.add_middleware(app.state.metrics.middleware)  # outermost: times every answer, 413s included

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        _check_metrics_token(request, settings)
        return Response(generate_latest(app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    for router in (health.router, datasets.router, jobs.router, job_history.router, models.router, tasks.router):
        app.include_router(router)
    install_console(app)
    _mark_binary_uploads(app)
    return app


def _check_metrics_token(request: Request, settings: Settings) -> None:
    """With FEWSHOT_METRICS_TOKEN set, /metrics answers only `Authorization: Bearer <that token>` (401 otherwise)."""
    if settings.metrics_token is None:
        return
    expected = f"Bearer {settings.metrics_token.get_secret_value()}".encode()
    if not hmac.compare_digest(request.headers.get("authorization", "").encode(), expected):
        raise Unauthorized("GET /metrics needs `Authorization: Bearer <token>` with the token in FEWSHOT_METRICS_TOKEN")


class _BodyTooLarge(Exception):
    """Raised into the app by _body_size_limit's receive once the body has passed the limit."""


def _body_size_limit(app: ASGIApp, settings: Settings) -> ASGIApp:
    """`app` behind a 413 for bodies larger than the route takes, counted as they arrive (plain ASGI, as metrics).

    A declared Content-Length over the limit is answered before any byte is read. Otherwise the
    bytes of each `http.request` message are counted (chunked bodies have no length), and the
    commas of JSON bodies (each separates two values: their number bounds what parsing costs):
    once past a limit the 413 is sent, the app's receive raises, and whatever the app sends
    after is dropped, so at most `limit` bytes are ever buffered.
    """

    async def limited(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        upload = scope["path"] in UPLOAD_PATHS
        limit = settings.max_upload_bytes if upload else settings.max_request_bytes
        setting = "FEWSHOT_MAX_UPLOAD_BYTES" if upload else "FEWSHOT_MAX_REQUEST_BYTES"
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and length.isdigit() and int(length) > limit:
            await _too_large(f"the request body has {length.decode()} bytes", limit, setting)(scope, receive, send)
            return
        content_type = next((v for k, v in scope["headers"] if k == b"content-type"), b"application/json")
        counted = not upload and b"json" in content_type.lower()  # commas in JSON separate values
        max_separators = settings.max_request_numbers + SEPARATOR_SLACK if counted else sys.maxsize
        received = separators = 0
        started = answered = False

        async def counting_receive() -> Message:
            nonlocal received, separators, answered
            message = await receive()
            if message["type"] == "http.request":
                body = message.get("body", b"")
                received += len(body)
                separators += body.count(b",") if counted else 0
                if received > limit or separators > max_separators:
                    if not started:
                        answered = True
                        too_large = (_too_large(f"the request body passed {limit} bytes", limit, setting)
                                     if received > limit else _too_many_values(settings.max_request_numbers))
                        await too_large(scope, receive, send)
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the 413 went out; the app's own answer to the exception is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await app(scope, counting_receive, tracking_send)
        except Exception:
            if not answered:
                raise

    return limited


def _too_many_values(limit: int) -> Response:
    return error_response(
        413, "invalid_request_error", "too_many_numbers",
        f"the request body holds more than {limit} numbers (or other JSON values), counted by their separators as "
        "it arrives; at most that many are taken per request (setting FEWSHOT_MAX_REQUEST_NUMBERS): split the inputs "
        "over several requests, or send images as PNG",
    )


def _too_large(what: str, limit: int, setting: str) -> Response:
    return error_response(
        413, "invalid_request_error", "payload_too_large",
        f"{what}; at most {limit} bytes are accepted (setting {setting})",
    )


def _mark_binary_uploads(app: FastAPI) -> None:
    """File fields also say `format: binary` (OpenAPI 3.0 style), so client generators send files."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        for component in schema.get("components", {}).get("schemas", {}).values():
            for prop in component.get("properties", {}).values():
                if prop.get("contentMediaType") == "application/octet-stream":
                    prop["format"] = "binary"
        declare_security(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
