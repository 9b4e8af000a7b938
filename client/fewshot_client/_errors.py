"""Errors the SDK raises: one class per kind of API answer, all under FewshotError."""

from __future__ import annotations

from typing import Any


class FewshotError(Exception):
    """Every error this SDK raises."""


class APIConnectionError(FewshotError):
    """The API could not be reached, or the connection broke before an answer (after the retries)."""


class WaitTimeout(FewshotError, TimeoutError):
    """A wait (Job.wait, Task.wait) ran past its timeout; the object is still going."""


class APIError(FewshotError):
    """The API answered with an error: `{"error": {"type", "code", "message", "param"}}`."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None,
                 body: Any = None, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}{f' ({param})' if param else ''}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.body = body
        self.retry_after = retry_after


class InvalidRequestError(APIError):
    """400, 413 or 422: the request itself is wrong; `param` names the field to fix."""


class AuthenticationError(APIError):
    """401: no API key, or a wrong one (FEWSHOT_API_KEY)."""


class NotFoundError(APIError):
    """404: no such object for this API key's tenant."""


class ConflictError(APIError):
    """409: the object's state forbids it (a finished job, a task not ready, a reused Idempotency-Key)."""


class RateLimitError(APIError):
    """429: over a rate or admission limit; `retry_after` says when to come back."""


class ServiceUnavailableError(APIError):
    """503: the API is overloaded or a dependency (queue, database) is down; `retry_after` says when to come back."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidRequestError, 401: AuthenticationError, 404: NotFoundError, 409: ConflictError,
    413: InvalidRequestError, 422: InvalidRequestError, 429: RateLimitError, 503: ServiceUnavailableError,
}


def error_for(status: int, body: Any, retry_after: float | None) -> APIError:
    """The exception for an error answer: its class from the status, its fields from the error body."""
    detail = body.get("error") if isinstance(body, dict) else None
    if isinstance(detail, dict):
        code, message, param = str(detail.get("code", "")), str(detail.get("message", "")), detail.get("param")
    else:  # not the API's error shape (a proxy in between): keep what came
        code, message, param = f"http_{status}", str(body)[:500], None
    cls = _BY_STATUS.get(status, APIError)
    return cls(status, code, message, param if isinstance(param, str) else None, body, retry_after)
