"""The adapt worker's announcement that a task's adaptation ended, on a Redis pub/sub channel.

Every API process listens on the channel (service/adaptation_waiter.py) and wakes the request
waiting for that task, if any: a waiting request holds no thread and no database connection.
The message is JSON `{"task_id", "status"}`; a lost message costs only a 202 instead of a 201.
"""

from __future__ import annotations

import functools
import json
import logging

import redis

log = logging.getLogger(__name__)

CHANNEL = "fewshot:adaptations"
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 2.0


@functools.lru_cache(maxsize=4)
def _client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=READ_TIMEOUT_S)


def announce(redis_url: str | None, task_id: str, status: str) -> None:
    """Publish that task_id is now `status`; best effort (the API re-reads the row on a timeout)."""
    announce_many(redis_url, {task_id: status})


def parse(message: bytes | str) -> str | None:
    """The task id in an announcement, or None for anything else."""
    try:
        data = json.loads(message)
    except (ValueError, TypeError):
        return None
    task_id = data.get("task_id") if isinstance(data, dict) else None
    return task_id if isinstance(task_id, str) else None


def announce_many(redis_url: str | None, statuses: dict[str, str]) -> None:
    """announce each (task_id, status) of a batch, in one round trip; best effort."""
    if not redis_url or not statuses:
        return
    try:
        pipe = _client(redis_url).pipeline(transaction=False)
        for task_id, status in statuses.items():
            pipe.publish(CHANNEL, json.dumps({"task_id": task_id, "status": status}))
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("%d adaptations not announced (%s: %s)", len(statuses), type(exc).__name__, exc)
