"""create_app: the FastAPI application, one router per resource."""

from __future__ import annotations

import logging

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from service.errors import error_response, install_error_handlers
from service.predictor import Predictor
from service.routes import health, jobs, models, tasks
from store.artifacts import ArtifactStore
from store.db import init_db
from store.queue import make_celery
from store.settings import Settings, get_settings

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(settings.torch_threads)
    init_db(settings.sqlalchemy_url)

    app = FastAPI(title="fewshot", version=API_VERSION, description="Few-shot adaptation as a service.")
    app.state.settings = settings
    app.state.artifacts = ArtifactStore(settings.artifact_dir)
    app.state.celery = make_celery(settings)
    app.state.predictor = Predictor(app.state.artifacts, settings.task_cache_size)
    install_error_handlers(app)

    @app.middleware("http")
    async def limit_body_size(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_request_bytes:
            return error_response(
                413, "invalid_request_error", "payload_too_large",
                f"the request body has {length} bytes; at most {settings.max_request_bytes} are accepted",
            )
        response: JSONResponse = await call_next(request)
        return response

    for router in (health.router, jobs.router, models.router, tasks.router):
        app.include_router(router)
    return app
