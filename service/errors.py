"""Domain errors, each mapped to the JSON error shape of DESIGN.md in one handler."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

HTTP_METHODS = {"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"}

# Retry-After of a 503: a dependency that failed (queue, database) is given a few seconds.
UNAVAILABLE_RETRY_AFTER_S = 5


class ApiError(Exception):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"
    retry_after: int | None = None  # seconds, sent as Retry-After (429s and 503s set it)

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"type": self.type, "code": self.code, "message": self.message, "param": self.param}}


class InvalidInput(ApiError):
    status = 422
    code = "invalid_input"


class Unauthorized(ApiError):
    status = 401
    type = "authentication_error"
    code = "unauthorized"


class TooManyRequests(ApiError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotFound(ApiError):
    status = 404
    code = "not_found"

    def __init__(self, kind: str, object_id: str, param: str = "id") -> None:
        super().__init__(f"no {kind} with id {object_id!r}", param=param)


class Conflict(ApiError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class Unavailable(ApiError):
    status = 503
    type = "service_unavailable"
    code = "unavailable"

    def __init__(
        self, message: str, *, param: str | None = None, code: str | None = None,
        retry_after: int = UNAVAILABLE_RETRY_AFTER_S,
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.retry_after = retry_after  # sent as Retry-After


def error_response(status: int, type_: str, code: str, message: str, param: str | None = None) -> JSONResponse:
    body = {"error": {"type": type_, "code": code, "message": message, "param": param}}
    return JSONResponse(body, status_code=status)


def _retry_later(status: int, code: str, message: str, retry_after: int) -> JSONResponse:
    response = error_response(status, "service_unavailable", code, message)
    response.headers["Retry-After"] = str(retry_after)
    return response


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.retry_after is not None:
            headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(PoolTimeout)
    async def _pool_exhausted(request: Request, exc: PoolTimeout) -> JSONResponse:
        log.warning("%s %s: no database connection free (%s)", request.method, request.url.path, exc)
        return _retry_later(503, "overloaded", "every database connection of this API process is busy; retry in 1 s", 1)

    @app.exception_handler(OperationalError)
    async def _database_down(request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("%s %s: database error %s", request.method, request.url.path, str(exc.orig or exc)[:500])
        return _retry_later(
            503, "database_unavailable", f"the database did not answer ({type(exc.orig or exc).__name__}); retry later",
            UNAVAILABLE_RETRY_AFTER_S,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises the exception after this answer, so the server logs its traceback.
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return error_response(500, "api_error", "internal_error", "the server failed to answer this request; it was logged")

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        message = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            message, param = "the request body is not valid JSON", None
        elif param:
            message = f"{param}: {message}"
        return error_response(422, "invalid_request_error", "invalid_request", message, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "malformed_body", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        response = error_response(exc.status_code, "invalid_request_error", code, str(exc.detail))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:  # Allow (RFC 9110): every method the path takes, not only its first route's
            response.headers["Allow"] = ", ".join(allowed_methods(request, response.headers.get("Allow", "")))
        return response


def allowed_methods(request: Request, first_route: str) -> list[str]:
    """The methods of every operation whose path matches the request's (FastAPI has one route per
    method, and Starlette's Allow, `first_route`, names only the first one's)."""
    methods = {m.strip() for m in first_route.split(",") if m.strip()}
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in re.split(r"(\{[^/}]+\})", template))
        if re.fullmatch(pattern, request.url.path):
            methods |= {method.upper() for method in operations if method.upper() in HTTP_METHODS}
    return sorted(methods)
