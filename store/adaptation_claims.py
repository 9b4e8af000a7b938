"""Which adapt worker is adapting a task right now: a short Redis claim per task id.

An adapt worker that takes one task's message also adapts the other queued tasks of the same
model in one batch (workers/pipelines.adapt_tasks). The claim keeps two workers (or a worker and
a task's own later message) from adapting the same task at once: SET NX with an expiry, so a
worker that dies holding claims gives them up by itself, and the reconciler's re-sent message
then adapts the task. Without Redis a worker adapts the task it was sent alone, unclaimed, as
it would with batching off.
"""

from __future__ import annotations

import functools
import logging
import secrets

import redis

log = logging.getLogger(__name__)

PREFIX = "fewshot:adapt-claim:"
CONNECT_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 1.0
# Longer than a batch of ordinary tasks takes (64 one-shot tasks of 100 inner steps of Conv4-64 on
# one CPU thread: about a minute); shorter than the wait a client might accept for a task whose
# worker died. A batch of big support sets can outlive its claims: a task's own message may then
# adapt it a second time, to the same state, which costs time, not correctness.
CLAIM_SECONDS = 120


class ClaimsUnavailable(Exception):
    """Redis did not answer: the caller adapts its own task alone, unclaimed."""


@functools.lru_cache(maxsize=4)
def _client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=READ_TIMEOUT_S)


class Claims:
    """The claims one batch holds: take() some task ids, release() them all when the batch ends."""

    def __init__(self, redis_url: str) -> None:
        self.client = _client(redis_url)
        self.token = secrets.token_hex(8)
        self.held: list[str] = []

    def take(self, task_ids: list[str]) -> list[str]:
        """The ids of `task_ids` this batch now holds (in order); the others are held elsewhere.
        Raises ClaimsUnavailable when Redis does not answer."""
        if not task_ids:
            return []
        try:
            pipe = self.client.pipeline(transaction=False)
            for task_id in task_ids:
                pipe.set(PREFIX + task_id, self.token, nx=True, ex=CLAIM_SECONDS)
            taken = [task_id for task_id, ok in zip(task_ids, pipe.execute(), strict=True) if ok]
        except redis.RedisError as exc:
            raise ClaimsUnavailable(f"{type(exc).__name__}: {exc}") from exc
        self.held += taken
        return taken

    def release(self) -> None:
        """Give back every claim this batch holds, only where it still holds it (best effort: an
        unreleased claim expires)."""
        if not self.held:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for task_id in self.held:
                pipe.eval(_RELEASE, 1, PREFIX + task_id, self.token)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("adaptation claims not released (%s: %s); they expire in %d s", type(exc).__name__, exc,
                        CLAIM_SECONDS)
        self.held = []


# Delete the claim only if this batch's token still holds it (it may have expired and been retaken).
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
