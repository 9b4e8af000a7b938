"""The SDK's one HTTP path: base URL and key, error answers as exceptions, retries with backoff."""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from fewshot_client._errors import APIConnectionError, APIError, error_for

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 120.0  # an adaptation may be waited for up to 30 s server-side, plus the queue
RETRY_STATUSES = (429, 503)
MAX_RETRY_AFTER_S = 60.0

# Errors raised before the request could reach the server: retrying them never repeats an action.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class Transport:
    """Sends requests to the API. Safe requests (reads, deletes, predictions, and creates, which
    carry an Idempotency-Key) are retried on 429, 503 and connection errors; others only when
    the request never left (refused connection) or the server refused it (429, 503)."""

    def __init__(self, base_url: str | None, api_key: str | None, timeout: float | None, max_retries: int,
                 http_client: httpx.Client | None = None) -> None:
        self.base_url = (base_url or os.environ.get("FEWSHOT_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("FEWSHOT_API_KEY") or None
        self.max_retries = max_retries
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self.http = http_client or httpx.Client(timeout=timeout)
        self.http.headers.update(headers)

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None,
                files: Any = None, data: Mapping[str, str] | None = None, idempotency_key: str | None = None,
                create: bool = False, safe: bool = True, content: bytes | None = None,
                content_type: str | None = None) -> Any:
        """The decoded JSON answer (None for 204); raises APIError or APIConnectionError. `content` is a
        raw body of `content_type`, sent instead of `json`."""
        headers: dict[str, str] = {}
        if create:
            headers["Idempotency-Key"] = idempotency_key or f"fewshot-sdk-{uuid.uuid4()}"
        if content_type is not None:
            headers["Content-Type"] = content_type
        with self._send(method, path, params=params, json=json, files=files, data=data, headers=headers,
                        safe=safe, content=content) as response:
            response.read()
            return None if response.status_code == 204 or not response.content else response.json()

    @contextmanager
    def stream(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
               headers: Mapping[str, str] | None = None, timeout: httpx.Timeout | None = None) -> Iterator[httpx.Response]:
        """An answer whose body is read as it comes (event streams, weight downloads)."""
        with self._send(method, path, params=params, headers=dict(headers or {}), safe=True,
                        timeout=timeout) as response:
            yield response

    @contextmanager
    def _send(self, method: str, path: str, *, headers: dict[str, str], safe: bool, timeout: httpx.Timeout | None = None,
              params: Mapping[str, Any] | None = None, json: Any = None, files: Any = None,
              data: Mapping[str, str] | None = None, content: bytes | None = None) -> Iterator[httpx.Response]:
        url = self.base_url + path
        query = {k: v for k, v in (params or {}).items() if v is not None}
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            if files is not None:
                for _name, (_filename, payload) in files.items():
                    if hasattr(payload, "seek"):
                        payload.seek(0)  # a retry sends the whole file again
            request = self.http.build_request(method, url, params=query, json=json, files=files, data=data,
                                              content=content, headers=headers,
                                              timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout)
            try:
                response = self.http.send(request, stream=True)
            except httpx.TransportError as exc:
                if last or not (safe or isinstance(exc, NOT_SENT)):
                    raise APIConnectionError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
                time.sleep(_backoff(attempt, None))
                continue
            try:
                if response.status_code < 400:
                    yield response
                    return
                response.read()
                error = _error(response)
                if last or not _retryable(error):
                    raise error
                time.sleep(_backoff(attempt, error.retry_after))
            finally:
                response.close()
        raise AssertionError("unreachable: the last attempt returns or raises")


def _retryable(error: APIError) -> bool:
    # A create whose first try is still running on the server (a retry after a broken connection).
    return error.status in RETRY_STATUSES or error.code == "idempotency_key_in_progress"


def _error(response: httpx.Response) -> APIError:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return error_for(response.status_code, body, _retry_after(response))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to the backoff


def _backoff(attempt: int, retry_after: float | None) -> float:
    """Retry-After when the server gave one, else 0.5 s doubling to 8 s, with jitter."""
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER_S)
    return min(0.5 * 2.0**attempt, 8.0) * random.uniform(0.75, 1.0)
