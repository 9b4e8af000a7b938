"""The adapt worker's announcement that a task's adaptation ended, on a Redis pub/sub channel.

Every API process listens on the channel (service/adaptation_waiter.py) and wakes the request
waiting for that task, if any: a waiting request holds no thread and no database connection.
The message is JSON `{"task_id", "status", "error", "ready_at"}`: the outcome as the worker has
just committed it to the task's row, so that the waiting request answers without reading the row
again (one with only the first two, from an older worker, makes it read the row). A lost message
costs only a 202 instead of a 201.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import redis

log = logging.getLogger(__name__)

CHANNEL = "fewshot:adaptations"
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 2.0


@functools.lru_cache(maxsize=4)
def _client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=READ_TIMEOUT_S)


@dataclass(frozen=True)
class Announcement:
    """A task's adaptation outcome as recorded in its row: status ("ready", "failed", or "missing"
    for a task deleted meanwhile), error, and ready_at (timezone-aware; None when not ready)."""

    task_id: str
    status: str
    error: str | None = None
    ready_at: datetime | None = None

    def to_json(self) -> str:
        ready_at = self.ready_at.isoformat() if self.ready_at is not None else None
        return json.dumps({"task_id": self.task_id, "status": self.status, "error": self.error, "ready_at": ready_at})


def announce(redis_url: str | None, task_id: str, status: str) -> None:
    """Publish that task_id is now `status`; best effort (the API re-reads the row on a timeout)."""
    announce_many(redis_url, [Announcement(task_id, status)])


def parse(message: bytes | str) -> Announcement | None:
    """The announcement in a message, or None for anything that is not one. Details that do not
    parse (an error that is not a string, a ready_at that is not an aware ISO time) are dropped,
    and the listener's request reads the row instead."""
    try:
        data = json.loads(message)
    except (ValueError, TypeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("task_id"), str) or not isinstance(data.get("status"), str):
        return None
    error = data.get("error")
    ready_at: datetime | None = None
    if isinstance(data.get("ready_at"), str):
        try:
            ready_at = datetime.fromisoformat(data["ready_at"])
        except ValueError:
            ready_at = None
        if ready_at is not None and ready_at.tzinfo is None:
            ready_at = None
    return Announcement(data["task_id"], data["status"], error if isinstance(error, str) else None, ready_at)


def announce_many(redis_url: str | None, announcements: Iterable[Announcement]) -> None:
    """Publish each announcement of a batch, in one round trip; best effort."""
    batch = list(announcements)
    if not redis_url or not batch:
        return
    try:
        pipe = _client(redis_url).pipeline(transaction=False)
        for announcement in batch:
            pipe.publish(CHANNEL, announcement.to_json())
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("%d adaptations not announced (%s: %s)", len(batch), type(exc).__name__, exc)
