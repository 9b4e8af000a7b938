"""The CLI's HTTP client: base URL and API key from options or the environment, errors as messages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


class ApiCallError(Exception):
    """The API answered with an error (or did not answer); the message says which and why."""


class ApiClient:
    def __init__(self, url: str, api_key: str | None, timeout: float = 120.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiCallError(f"cannot reach the API at {self.http.base_url}: {exc}") from None
        if response.status_code >= 400:
            raise ApiCallError(_error_message(response))
        return None if response.status_code == 204 else response.json()

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def events(self, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """A job's Server-Sent Events as (type, data) until the stream ends with the job."""
        try:
            with self.http.stream("GET", f"/v1/jobs/{job_id}/events", params={"stream": "true"}, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ApiCallError(_error_message(response))
                kind, data = "message", ""
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data += line[5:].strip()
                    elif not line and data:
                        yield kind, json.loads(data)
                        kind, data = "message", ""
        except httpx.HTTPError as exc:
            raise ApiCallError(f"the event stream broke: {exc}") from None


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        param = f" ({error['param']})" if error.get("param") else ""
        return f"{response.status_code} {error['code']}{param}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code}: {response.text[:500]}"
