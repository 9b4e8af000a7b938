"""What every route declares: the error responses, and list paging."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query

from service.schemas import ID_MAX_LENGTH, ID_PATTERN, ErrorBody

# An object's id in a path (job_..., ds_..., or a built-in dataset's name): anything else is a
# 422 before any query (PostgreSQL refuses a NUL byte in a string with an error).
ObjectId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
# A list's cursor: the last id of the previous page.
Cursor = Annotated[
    str | None,
    Query(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN, description="the last id of the previous page"),
]


def errors(*statuses: int, auth: bool = True) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations of error statuses, all with the one error schema.

    Every /v1 route may answer 401 (a missing or wrong API key), 422 (a malformed request),
    429 (the tenant's requests this minute are over FEWSHOT_RATE_LIMIT_PER_MINUTE) and 503 (the
    database that holds the API keys did not answer). Routes that take a body add BODY_ERRORS.
    """
    declared = {*statuses, *((401, 422, 429, 503) if auth else ())}
    return {status: _declaration(status) for status in sorted(declared)}


RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}


def _declaration(status: int) -> dict[str, Any]:
    declared: dict[str, Any] = {"model": ErrorBody, "description": DESCRIPTIONS.get(status, "error")}
    if status in (429, 503):  # shed load: the client is told when to come back
        declared["headers"] = RETRY_AFTER
    return declared


# A route that takes a request body: one that cannot be parsed (bytes that are not UTF-8 JSON, a
# broken multipart form) is a 400, and one over FEWSHOT_MAX_REQUEST_BYTES a 413.
BODY_ERRORS = (400, 413)

# Sending a message to a broker that is down: one quick retry (a dropped connection is reopened),
# then 503 (the client retries, safely with an Idempotency-Key) rather than holding the request
# for Celery's default ~20 s. A Redis that accepts connections but does not answer costs each try
# FEWSHOT_REDIS_TIMEOUT_SECONDS to read and as much to reconnect: about 3 s at the default 1 s.
SEND_RETRY = {"max_retries": 1, "interval_start": 0.0, "interval_step": 0.2, "interval_max": 0.5}

DESCRIPTIONS = {
    400: "the request body could not be parsed (not UTF-8 JSON, or a malformed multipart form)",
    401: "missing or invalid API key",
    404: "no such object for this tenant",
    409: "conflict with the object's state or an earlier request",
    413: "request body too large",
    422: "invalid input",
    429: "too many requests",
    503: "a dependency (queue, database) is unavailable",
}
