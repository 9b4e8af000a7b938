"""POST /v1/tasks/{task_id}/predictions and POST /v1/models/{model_id}/tasks below FastAPI's
per-request machinery.

A plain ASGI handler in front of the router takes the requests it can answer exactly as the
declared route would. Predictions: a JSON body `{"inputs": [...]}`, or a raw body
(`application/octet-stream`: float32 little-endian in the model's input shape, the batch is the
body's length over one input's bytes; `image/png`: one image). Rows come from the in-process caches
(service/hot.py; SQL only on a miss, in the thread pool), the forward pass from the model's batcher
(service/batching.py), the answer is written with orjson. New tasks: a JSON body that TaskCreate
validates, answered by the route's own code (service/routes/tasks.py task_answer) without FastAPI's
request parsing, dependencies and response validation (about 1 ms of the API's time an adaptation).
Anything else (a body that does not validate, an id that is not an id, another content type) is
handed to the FastAPI route unchanged, so its validation errors stay the same; errors raised here go
through the app's own exception handlers (same status, JSON shape, headers).
"""

from __future__ import annotations

import base64
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson
import torch
from fastapi import FastAPI
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.episodes import ProblemSpec
from service.deps import IDEMPOTENCY_KEY_MAX_LENGTH, cached_tenant_of
from service.errors import ApiError, Conflict, InvalidInput, NotFound, PayloadTooLarge
from service.hot import HotRows
from service.inputs import MAX_ITEMS, InputBudget, check_finite_outputs, parse_inputs
from service.predictor import Predictor
from service.schemas import ID_MAX_LENGTH, TaskCreate

log = logging.getLogger(__name__)

PREDICTIONS_PATH = "/v1/tasks/{task_id}/predictions"
_PATH = re.compile(r"^/v1/tasks/([A-Za-z0-9_-]{1,64})/predictions$")
TASKS_PATH = "/v1/models/{model_id}/tasks"
_TASKS_PATH = re.compile(rf"^/v1/models/([A-Za-z0-9_-]{{1,{ID_MAX_LENGTH}}})/tasks$")
INLINE_BODY_BYTES = 65_536  # smaller JSON bodies are parsed on the event loop (no thread hop)
# (spec, budget, conversions) -> inputs [B, *input_shape]; conversions collects what the modality converted
Parse = Callable[[ProblemSpec, InputBudget, list[str]], torch.Tensor]


async def predictions(state: Any, request: Request, task_id: str, parse: Parse, inline: bool) -> bytes:
    """The JSON answer for a prediction request: the same for the raw handler and the declared route."""
    hot: HotRows = state.hot
    settings = state.settings
    tenant = await cached_tenant_of(state, request)
    task = hot.cached_task(task_id) or await run_in_threadpool(hot.load_task, task_id)
    if task is None or task.tenant_id != tenant:
        raise NotFound("task", task_id, param="task_id")
    if task.status != "ready":
        raise Conflict(f"task {task_id} is {task.status}, not ready; predictions need a ready task", param="task_id", code="task_not_ready")
    predictor: Predictor = state.predictor
    learners = predictor.learners.peek(task.model_id)
    if learners is None:
        learners = await run_in_threadpool(predictor.learner_for, task.model_id, lambda: hot.model_row(task.model_id))
    spec = learners.spec
    budget = InputBudget.from_settings(settings)
    conversions: list[str] = []
    x = parse(spec, budget, conversions) if inline else await run_in_threadpool(parse, spec, budget, conversions)
    phi = predictor.states.peek(task_id)
    if phi is None:
        artifact = task.artifact
        phi = await run_in_threadpool(predictor.state, learners, task_id, artifact)
    start = time.perf_counter()
    outputs = await predictor.batcher(learners).predict(task_id, phi, x)
    state.metrics.prediction_seconds.observe(time.perf_counter() - start)
    check_finite_outputs(outputs, "inputs")  # a 422, never a 200 with null predictions
    answer: dict[str, Any] = {"object": "predictions", "task_id": task_id}
    if spec.output == "classification":
        probs = torch.softmax(outputs, dim=-1)
        labels: list[Any] = task.labels or []
        answer.update(predictions=[labels[i] for i in probs.argmax(dim=-1).tolist()], probabilities=probs.tolist(), labels=labels)
    else:
        rows = outputs.tolist()
        answer.update(predictions=[r[0] for r in rows] if task.scalar_targets else rows, probabilities=None, labels=None)
    answer["conversions"] = conversions
    return orjson.dumps(answer)


def json_inputs(values: list[Any]) -> Parse:
    return lambda spec, budget, conversions: parse_inputs(values, spec, "inputs", budget, conversions)


def float32_inputs(body: bytes) -> Parse:
    def parse(spec: ProblemSpec, budget: InputBudget, conversions: list[str]) -> torch.Tensor:
        shape = tuple(spec.input_shape)
        size = 4 * math.prod(shape)
        if not body or len(body) % size:
            raise InvalidInput(
                f"the body has {len(body)} bytes; application/octet-stream takes float32 inputs (little-endian) of "
                f"shape {list(shape)}, {size} bytes each, one after another", param="body", code="invalid_input_shape",
            )
        n = len(body) // size
        if n > MAX_ITEMS:
            raise InvalidInput(f"the body holds {n} inputs, at most {MAX_ITEMS} are taken", param="body")
        if n * math.prod(shape) > budget.request_numbers:
            raise PayloadTooLarge(
                f"the body holds {n * math.prod(shape)} numbers; at most {budget.request_numbers} are taken per request "
                "(setting FEWSHOT_MAX_REQUEST_NUMBERS): split the inputs over several requests", param="body",
                code="too_many_numbers",
            )
        array = np.frombuffer(body, dtype="<f4").astype(np.float32).reshape(n, *shape)
        if not np.isfinite(array).all():
            raise InvalidInput("the body contains NaN or infinity", param="body", code="non_finite_input")
        return torch.from_numpy(array)

    return parse


def png_input(body: bytes) -> Parse:
    encoded = base64.b64encode(body).decode()  # the JSON route's decoder (service/inputs.py), unchanged
    return lambda spec, budget, conversions: parse_inputs([encoded], spec, "body", budget, conversions)


def fast_predictions(app: ASGIApp, fastapi_app: FastAPI, route: Any) -> ASGIApp:
    """`app` with POST PREDICTIONS_PATH answered in front of it; `route` is that path's declared route."""

    def take(scope: Scope, match: re.Match[str], body: bytes) -> Answer | None:
        media = _media(scope, default=b"application/json")
        parse: Parse | None = None
        inline = len(body) <= INLINE_BODY_BYTES
        if media == b"application/json":
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                data = None
            if isinstance(data, dict) and data.keys() == {"inputs"} and isinstance(data["inputs"], list):
                parse = json_inputs(data["inputs"])
        elif media == b"application/octet-stream":
            parse, inline = float32_inputs(body), True
        elif media == b"image/png":
            parse = png_input(body)
        if parse is None:
            return None
        found = parse

        async def answer(request: Request) -> Response:
            content = await predictions(fastapi_app.state, request, match.group(1), found, inline)
            return Response(content, media_type="application/json")

        return answer

    return _in_front(app, fastapi_app, _PATH, route, take)


# (app state, request, model id, body, Idempotency-Key) -> the answer: service/routes/tasks.py task_answer
TaskAnswer = Callable[[Any, Request, str, TaskCreate, "str | None"], Awaitable[Response]]


def fast_task_creation(app: ASGIApp, fastapi_app: FastAPI, route: Any, answer: TaskAnswer) -> ASGIApp:
    """`app` with POST TASKS_PATH's JSON bodies answered in front of it by `answer`; `route` is that
    path's declared POST route."""

    def take(scope: Scope, match: re.Match[str], body: bytes) -> Answer | None:
        keys = [v for k, v in scope["headers"] if k == b"idempotency-key"]
        task = _task_create(body) if _media(scope, default=b"") == b"application/json" and len(keys) <= 1 else None
        key = keys[0].decode("latin-1") if keys else None
        if task is None or (key is not None and len(key) > IDEMPOTENCY_KEY_MAX_LENGTH):
            return None
        return lambda request: answer(fastapi_app.state, request, match.group(1), task, key)

    return _in_front(app, fastapi_app, _TASKS_PATH, route, take)


Answer = Callable[[Request], Awaitable[Response]]
# What a handler in front makes of a POST to its path (scope, the path's match, the body): its
# answer, or None where the declared route must answer (and its validation errors with it).
Take = Callable[[Scope, "re.Match[str]", bytes], "Answer | None"]


def _in_front(app: ASGIApp, fastapi_app: FastAPI, path: re.Pattern[str], route: Any, take: Take) -> ASGIApp:
    """`app` with the POSTs to `path` that `take` answers answered in front of it; the others, body
    replayed, go to `app`. Errors raised by an answer go through the app's own exception handlers."""

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        match = path.match(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if match is None:
            await app(scope, receive, send)
            return
        scope["route"] = route  # the metrics label requests by route template, a 413 while reading included
        body, messages = await _read(receive)
        answer = take(scope, match, body)
        if answer is None:
            await app(scope, _replay(messages, receive), send)
            return
        request = Request(scope)
        try:
            response = await answer(request)
        except Exception as exc:  # noqa: BLE001 - answered by the app's handler for it, as the router would
            if not isinstance(exc, ApiError):
                log.exception("POST %s failed", scope["path"])
            response = await _handled(fastapi_app, request, exc)
        await response(scope, receive, send)

    return handle


def _media(scope: Scope, default: bytes) -> bytes:
    """The request's media type, lower case, without parameters (`default` when none is given)."""
    content_type = next((v for k, v in scope["headers"] if k == b"content-type"), default)
    return content_type.split(b";")[0].strip().lower()


def _task_create(body: bytes) -> TaskCreate | None:
    """The body as TaskCreate, or None where FastAPI's own parsing must answer (not JSON orjson
    reads, NaN literals and integers past 64 bits included, or not valid)."""
    try:
        return TaskCreate.model_validate(orjson.loads(body))
    except (orjson.JSONDecodeError, ValidationError):
        return None


async def _read(receive: Receive) -> tuple[bytes, list[Message]]:
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    return b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request"), messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


async def _handled(app: FastAPI, request: Request, exc: Exception) -> Response:
    for cls in type(exc).__mro__:
        handler = app.exception_handlers.get(cls)
        if handler is not None:
            return await handler(request, exc)  # type: ignore[no-any-return]
    raise exc
