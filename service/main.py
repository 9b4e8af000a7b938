"""create_app: the FastAPI application, one router per resource."""

from __future__ import annotations

import logging
from typing import Any

import torch
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.errors import error_response, install_error_handlers
from service.metrics import ApiMetrics
from service.predictor import Predictor
from service.ratelimit import RateLimiter
from service.routes import datasets, health, job_history, jobs, models, tasks
from store.artifacts import artifact_store
from store.db import init_db
from store.queue import make_celery
from store.settings import Settings, get_settings

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
UPLOAD_PATHS = ("/v1/datasets",)  # these take bodies up to max_upload_bytes

TAGS = [
    {"name": "health", "description": "liveness and readiness"},
    {"name": "datasets", "description": "built-in datasets and uploads (npz, or a zip of class folders of images)"},
    {"name": "jobs", "description": "meta-training jobs: submit, follow (events, checkpoints), cancel"},
    {"name": "models", "description": "meta-trained models"},
    {"name": "tasks", "description": "tasks adapted to a support set, and their predictions"},
]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(settings.torch_threads)
    init_db(settings.sqlalchemy_url)

    app = FastAPI(
        title="fewshot", version=API_VERSION, openapi_tags=TAGS,
        description="Few-shot adaptation as a service. Every /v1 route takes `Authorization: Bearer <API key>` "
                    "once any key exists; errors are `{\"error\": {\"type\", \"code\", \"message\", \"param\"}}`.",
    )
    app.state.settings = settings
    app.state.artifacts = artifact_store(settings)
    app.state.celery = make_celery(settings)
    app.state.predictor = Predictor(app.state.artifacts, settings.task_cache_size)
    app.state.rate_limiter = RateLimiter(settings.redis_url, settings.rate_limit_per_minute)
    app.state.metrics = ApiMetrics()
    app.state.metrics.watch(settings.sqlalchemy_url, app.state.celery, app.state.predictor)
    install_error_handlers(app)

    @app.middleware("http")
    async def limit_body_size(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        limit = settings.max_upload_bytes if request.url.path in UPLOAD_PATHS else settings.max_request_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            return error_response(
                413, "invalid_request_error", "payload_too_large",
                f"the request body has {length} bytes; at most {limit} are accepted",
            )
        return await call_next(request)

    app.middleware("http")(app.state.metrics.middleware)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    for router in (health.router, datasets.router, jobs.router, job_history.router, models.router, tasks.router):
        app.include_router(router)
    _mark_binary_uploads(app)
    return app


def _mark_binary_uploads(app: FastAPI) -> None:
    """File fields also say `format: binary` (OpenAPI 3.0 style), so client generators send files."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        for component in schema.get("components", {}).get("schemas", {}).values():
            for prop in component.get("properties", {}).values():
                if prop.get("contentMediaType") == "application/octet-stream":
                    prop["format"] = "binary"
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
