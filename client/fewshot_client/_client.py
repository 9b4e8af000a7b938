"""Fewshot: the API's resources (jobs, datasets, models, tasks) as methods that return typed objects."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from fewshot_client._errors import APIConnectionError, WaitTimeout
from fewshot_client._http import DEFAULT_TIMEOUT, Transport
from fewshot_client._inputs import Inputs, encode_inputs, float32_body
from fewshot_client._objects import (
    Checkpoint,
    Dataset,
    Job,
    JobEvent,
    JobStatus,
    Model,
    Predictions,
    Task,
    as_dict,
)
from fewshot_client._paging import Page
from fewshot_client._sse import parse_sse

STREAM_READ_TIMEOUT_S = 30.0  # the API sends a keep-alive every 15 s on a quiet stream


class Fewshot:
    """The fewshot API. `base_url` and `api_key` default to FEWSHOT_URL and FEWSHOT_API_KEY.

    >>> fs = Fewshot()
    >>> job = fs.jobs.create("maml", "sinusoid", config={"steps": 200}).wait()
    >>> task = fs.models.adapt(job.model_id, [[0.0], [1.0]], [0.0, 0.84])
    >>> task.predict([[0.5]]).predictions
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout: float | None = DEFAULT_TIMEOUT, max_retries: int = 2,
                 http_client: httpx.Client | None = None) -> None:
        self._transport = Transport(base_url, api_key, timeout, max_retries, http_client)
        self.jobs = Jobs(self)
        self.datasets = Datasets(self)
        self.models = Models(self)
        self.tasks = Tasks(self)

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Fewshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Resource:
    def __init__(self, client: Fewshot) -> None:
        self._client = client
        self._http = client._transport

    def _get(self, path: str, **params: Any) -> dict[str, Any]:
        return as_dict(self._http.request("GET", path, params=params))


class Jobs(_Resource):
    def create(self, algorithm: str, dataset: str, config: Mapping[str, Any] | None = None, *,
               name: str | None = None, metadata: Mapping[str, str] | None = None,
               idempotency_key: str | None = None) -> Job:
        """Submits a meta-training job (queued); `job.wait()` follows it to its end."""
        body: dict[str, Any] = {"algorithm": algorithm, "dataset": dataset, "config": dict(config or {})}
        if name is not None:
            body["name"] = name
        if metadata is not None:
            body["metadata"] = dict(metadata)
        raw = self._http.request("POST", "/v1/jobs", json=body, create=True, idempotency_key=idempotency_key)
        return Job.parse(as_dict(raw), self._client)

    def get(self, job_id: str) -> Job:
        return Job.parse(self._get(f"/v1/jobs/{job_id}"), self._client)

    def list(self, *, limit: int = 20, status: JobStatus | None = None, name: str | None = None,
             metadata: Mapping[str, str] | None = None, after: str | None = None) -> Page[Job]:
        """Jobs, newest first, every page (`limit` is the page size)."""
        filters: dict[str, Any] = {"status": status, "name": name}
        filters.update({f"metadata[{k}]": v for k, v in (metadata or {}).items()})
        return Page(lambda cursor: self._get("/v1/jobs", limit=limit, after=cursor, **filters),
                    lambda raw: Job.parse(raw, self._client), lambda job: job.id, after)

    def cancel(self, job_id: str) -> Job:
        raw = self._http.request("POST", f"/v1/jobs/{job_id}/cancel", safe=False)
        return Job.parse(as_dict(raw), self._client)

    def checkpoints(self, job_id: str, *, limit: int = 20) -> Page[Checkpoint]:
        return Page(lambda cursor: self._get(f"/v1/jobs/{job_id}/checkpoints", limit=limit, after=cursor),
                    Checkpoint.parse, lambda c: c.id)

    def events(self, job_id: str, *, stream: bool = False, after: int = 0, limit: int = 100,
               deadline: float | None = None) -> Iterator[JobEvent]:
        """The job's events in order. stream=False: those recorded so far, page by page; stream=True: a
        Server-Sent Events stream that ends when the job has ended (reconnecting where it broke off).
        `deadline` (time.monotonic()) ends a stream with WaitTimeout."""
        if not stream:
            return iter(Page(lambda cursor: self._get(f"/v1/jobs/{job_id}/events", limit=limit, after=cursor or after),
                             JobEvent.parse, lambda e: e.id))
        return self._stream(job_id, after, deadline)

    def _stream(self, job_id: str, after: int, deadline: float | None) -> Iterator[JobEvent]:
        breaks = 0
        while True:
            read = STREAM_READ_TIMEOUT_S if deadline is None else max(0.1, min(STREAM_READ_TIMEOUT_S,
                                                                                 deadline - time.monotonic()))
            try:
                with self._http.stream("GET", f"/v1/jobs/{job_id}/events", params={"stream": "true", "after": after},
                                       headers={"Accept": "text/event-stream"},
                                       timeout=httpx.Timeout(read, connect=10.0)) as response:
                    for sse in parse_sse(response.iter_lines()):
                        if sse.event == "end":
                            return
                        event = JobEvent.parse(as_dict(json.loads(sse.data)))
                        after, breaks = event.id, 0
                        yield event
                        _check(deadline, job_id)
                return  # the server closed the stream without `end`: the job has ended
            except (httpx.TransportError, APIConnectionError) as exc:
                _check(deadline, job_id)
                if not isinstance(exc, httpx.ReadTimeout):
                    breaks += 1
                    if breaks > self._http.max_retries:
                        raise APIConnectionError(f"the event stream of job {job_id} broke: {exc}") from exc
                    time.sleep(0.5 * breaks)


def _check(deadline: float | None, job_id: str) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise WaitTimeout(f"job {job_id} has not ended within the timeout")


class Datasets(_Resource):
    def upload(self, path_or_bytes: str | os.PathLike[str] | bytes, name: str | None = None, *,
               filename: str | None = None, idempotency_key: str | None = None, **fields: Any) -> Dataset:
        """Uploads an .npz or a .zip of class folders; other form fields (image_size, invert, ...) as keywords."""
        if isinstance(path_or_bytes, bytes):
            payload, default_name = path_or_bytes, "upload.zip" if path_or_bytes[:2] == b"PK" else "upload.npz"
        else:
            path = Path(path_or_bytes)
            payload, default_name = path.read_bytes(), path.name
        form = {k: _form_value(v) for k, v in fields.items() if v is not None}
        if name is not None:
            form["name"] = name
        raw = self._http.request("POST", "/v1/datasets", files={"file": (filename or default_name, io.BytesIO(payload))},
                                 data=form, create=True, idempotency_key=idempotency_key)
        return Dataset.parse(as_dict(raw))

    def get(self, dataset_id: str) -> Dataset:
        return Dataset.parse(self._get(f"/v1/datasets/{dataset_id}"))

    def list(self, *, limit: int = 20, after: str | None = None) -> Page[Dataset]:
        """Uploaded datasets (newest first), then the built-ins."""
        return Page(lambda cursor: self._get("/v1/datasets", limit=limit, after=cursor), Dataset.parse,
                    lambda d: d.id, after)

    def delete(self, dataset_id: str) -> None:
        self._http.request("DELETE", f"/v1/datasets/{dataset_id}")


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


class Models(_Resource):
    def get(self, model_id: str) -> Model:
        return Model.parse(self._get(f"/v1/models/{model_id}"), self._client)

    def list(self, *, limit: int = 20, after: str | None = None) -> Page[Model]:
        return Page(lambda cursor: self._get("/v1/models", limit=limit, after=cursor),
                    lambda raw: Model.parse(raw, self._client), lambda m: m.id, after)

    def delete(self, model_id: str) -> None:
        """The model and all its tasks."""
        self._http.request("DELETE", f"/v1/models/{model_id}")

    def adapt(self, model_id: str, inputs: Inputs, labels: Sequence[Any], *, wait: bool = True,
              timeout: float | None = None, idempotency_key: str | None = None, **options: Any) -> Task:
        """A task adapted to the support set (inputs, labels); options: inner_steps, inner_lr.
        wait=True returns it ready (or raises); wait=False returns it adapting."""
        body = {"support": {"inputs": encode_inputs(inputs), "labels": list(labels)}, "options": options, "wait": wait}
        raw = self._http.request("POST", f"/v1/models/{model_id}/tasks", json=body, create=True,
                                 idempotency_key=idempotency_key)
        task = Task.parse(as_dict(raw), self._client)
        return task.wait(timeout) if wait else task  # the API answers 202 adapting past its own wait

    def tasks(self, model_id: str, *, limit: int = 20, after: str | None = None) -> Page[Task]:
        """The model's tasks, newest first."""
        return Page(lambda cursor: self._get(f"/v1/models/{model_id}/tasks", limit=limit, after=cursor),
                    lambda raw: Task.parse(raw, self._client), lambda t: t.id, after)

    def export(self, model_id: str, path: str | os.PathLike[str]) -> Path:
        """Writes the model's meta-trained weights (safetensors, with the config that rebuilds the network in
        its metadata) to `path`; returns the path."""
        target = Path(path)
        partial = target.with_name(target.name + ".part")
        with self._http.stream("GET", f"/v1/models/{model_id}/weights") as response, partial.open("wb") as out:
            for chunk in response.iter_bytes():
                out.write(chunk)
        partial.replace(target)
        return target


class Tasks(_Resource):
    def get(self, task_id: str) -> Task:
        return Task.parse(self._get(f"/v1/tasks/{task_id}"), self._client)

    def delete(self, task_id: str) -> None:
        self._http.request("DELETE", f"/v1/tasks/{task_id}")

    def predict(self, task_id: str, inputs: Inputs, *, binary: bool = False) -> Predictions:
        """Predictions in the support set's labels (with probabilities for classification).

        binary=True sends numeric inputs (an array or nested lists of shape (n, *input_shape)) as one
        raw float32 body (application/octet-stream) instead of JSON: fewer bytes and less of the
        server's time per prediction; the answer is the same."""
        body: dict[str, Any] = ({"content": float32_body(inputs), "content_type": "application/octet-stream"} if binary
                                else {"json": {"inputs": encode_inputs(inputs)}})
        raw = self._http.request("POST", f"/v1/tasks/{task_id}/predictions", **body)
        return Predictions.parse(as_dict(raw))
