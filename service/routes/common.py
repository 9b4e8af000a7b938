"""What every route declares: the error responses, and list paging."""

from __future__ import annotations

from typing import Any

from service.schemas import ErrorBody


def errors(*statuses: int, auth: bool = True) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations of error statuses, all with the one error schema.

    Every /v1 route may answer 401 (a missing or wrong API key), 422 (a malformed request) and
    429 (the tenant's requests this minute are over FEWSHOT_RATE_LIMIT_PER_MINUTE).
    """
    declared = {*statuses, *((401, 422, 429) if auth else ())}
    return {status: {"model": ErrorBody, "description": DESCRIPTIONS.get(status, "error")} for status in sorted(declared)}


# Sending a message to a broker that is down: a few quick retries, then 503 (the client retries,
# safely with an Idempotency-Key) rather than holding the request for Celery's default ~20 s.
SEND_RETRY = {"max_retries": 3, "interval_start": 0.0, "interval_step": 0.2, "interval_max": 0.5}

DESCRIPTIONS = {
    400: "bad request",
    401: "missing or invalid API key",
    404: "no such object for this tenant",
    409: "conflict with the object's state or an earlier request",
    413: "request body too large",
    422: "invalid input",
    429: "too many requests",
    503: "a dependency (queue, database) is unavailable",
}
