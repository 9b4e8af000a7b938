"""Dynamic batching of predictions: concurrent requests for one model run as one forward pass.

Each model has a batcher on the API's event loop. A request for an idle model runs at once
(no added latency for a lone client); requests that arrive while the model's passes are busy
gather for at most `window` seconds (FEWSHOT_PREDICT_BATCH_WINDOW_MS) or until `max_batch`, and
then run together: the inputs of requests for the same task are concatenated, the tasks go to
the learner's predict_many (one embedding pass, vmap over stacked task states, stacked
summaries; per-task calls where a learner has no batched form or where they are faster, as the
MAML family's direct Conv4 predictions on the CPU), and each request gets its own rows back.
`slots` passes of one model run at once (one per learner replica, in their own threads: torch
releases the GIL in its kernels).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from models.learners import Learner
from models.learners.base import Params

log = logging.getLogger(__name__)


@dataclass
class _Request:
    task_id: str
    phi: Params
    x: torch.Tensor
    future: asyncio.Future[torch.Tensor]


def run_batch(learner: Learner, requests: list[tuple[str, Params, torch.Tensor]]) -> list[torch.Tensor | BaseException]:
    """Each request's outputs (or the exception its own predict raised): one predict_many over the
    distinct tasks, each task's inputs concatenated. Blocking."""
    order: dict[str, list[int]] = {}
    for i, (task_id, _, _) in enumerate(requests):
        order.setdefault(task_id, []).append(i)
    tasks = [(requests[idx[0]][1], torch.cat([requests[i][2] for i in idx])) for idx in order.values()]
    try:
        outputs = learner.predict_many(tasks) if len(tasks) > 1 else [learner.predict(*tasks[0])]
    except Exception:  # noqa: BLE001 - one bad request must not fail its companions: answer each alone
        if len(requests) == 1:
            raise
        answers: list[torch.Tensor | BaseException] = []
        for _, phi, x in requests:
            try:
                answers.append(learner.predict(phi, x))
            except Exception as exc:  # noqa: BLE001
                answers.append(exc)
        return answers
    answers = [None] * len(requests)
    for idx, out in zip(order.values(), outputs, strict=True):
        for i, part in zip(idx, out.split([len(requests[i][2]) for i in idx]), strict=True):
            answers[i] = part
    return answers  # type: ignore[return-value]


class ModelBatcher:
    def __init__(self, learners: list[Learner], executor: ThreadPoolExecutor, window: float, max_batch: int) -> None:
        self._free = list(learners)
        self._total = len(learners)
        self._executor = executor
        self.window = window
        self.max_batch = max(1, max_batch)
        self._pending: list[_Request] = []
        self._timer: asyncio.TimerHandle | None = None
        self._soon = False
        self.batches = self.requests = 0

    async def predict(self, task_id: str, phi: Params, x: torch.Tensor) -> torch.Tensor:
        loop = asyncio.get_running_loop()
        request = _Request(task_id, phi, x, loop.create_future())
        self._pending.append(request)
        self._schedule(loop)
        return await request.future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._pending or not self._free:
            return  # a pass that ends schedules the next
        busy = len(self._free) < self._total
        if not busy or len(self._pending) >= self.max_batch or self.window <= 0:
            if not self._soon:  # call_soon: requests already runnable on this loop tick join in
                self._soon = True
                loop.call_soon(self._dispatch, loop)
        elif self._timer is None:
            self._timer = loop.call_later(self.window, self._dispatch, loop)

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        self._soon = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending or not self._free:
            return
        batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        learner = self._free.pop()
        self.batches += 1
        self.requests += len(batch)
        done = loop.run_in_executor(self._executor, run_batch, learner, [(r.task_id, r.phi, r.x) for r in batch])
        done.add_done_callback(lambda f: self._finish(loop, learner, batch, f))
        self._schedule(loop)

    def _finish(self, loop: asyncio.AbstractEventLoop, learner: Learner, batch: list[_Request], done: asyncio.Future) -> None:
        self._free.append(learner)
        error = done.exception()
        answers = [error] * len(batch) if error is not None else done.result()
        for request, answer in zip(batch, answers, strict=True):
            if request.future.done():
                continue
            if isinstance(answer, BaseException):
                request.future.set_exception(answer)
            else:
                request.future.set_result(answer)
        self._schedule(loop)
