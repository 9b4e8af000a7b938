"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.deps import QueueDep, SessionDep
from service.errors import UNAVAILABLE_RETRY_AFTER_S
from service.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="healthz", response_model=Health)
def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", operation_id="readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(session: SessionDep, queue: QueueDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none raised
        checks["database"] = f"unavailable: {type(exc).__name__}"
    try:  # bounded: FEWSHOT_REDIS_TIMEOUT_SECONDS to connect and to answer (store/queue.py)
        with queue.connection_for_write() as conn:
            conn.default_channel.client.ping()  # type: ignore[attr-defined]
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    if checks["redis"] == "ok":
        try:
            replies = queue.control.ping(timeout=1.0) or []
            checks["workers"] = f"{len(replies)} answering" if replies else "none answering"
        except Exception as exc:  # noqa: BLE001
            checks["workers"] = f"unavailable: {type(exc).__name__}"
    else:
        checks["workers"] = "unknown: no redis"
    ready = checks["database"] == "ok" and checks["redis"] == "ok" and checks["workers"].endswith("answering") and not checks["workers"].startswith("none")
    body = Health(status="ready" if ready else "not ready", checks=checks)
    if ready:
        return JSONResponse(body.model_dump())
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)})
