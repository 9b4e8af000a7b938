"""Invalidations of the API processes' in-process row caches, on a Redis pub/sub channel.

Every API process caches task, model and API-key rows (service/hot.py) and listens here. A
process that deletes a task or a model, or a command that creates or revokes a key, publishes
what changed; every listener drops it. A listener that loses Redis serves from its caches no
more until it has subscribed again, and every cached row also expires after a short TTL, so a
lost message costs at most that TTL. Messages are JSON `{"kind": "task"|"model"|"keys", "id"}`.
"""

from __future__ import annotations

import json
import logging

from store.adaptation_events import _client

log = logging.getLogger(__name__)

CHANNEL = "fewshot:invalidations"
KINDS = ("task", "model", "keys")


def publish(redis_url: str | None, kind: str, object_id: str = "") -> None:
    """Tell every API process that `kind` `object_id` changed; best effort (the TTL is the net)."""
    if not redis_url:
        return
    try:
        _client(redis_url).publish(CHANNEL, json.dumps({"kind": kind, "id": object_id}))
    except Exception as exc:  # noqa: BLE001 - the change is committed; caches expire on their own
        log.warning("%s %s: invalidation not published (%s: %s)", kind, object_id, type(exc).__name__, exc)


def parse(message: bytes | str) -> tuple[str, str] | None:
    try:
        data = json.loads(message)
    except (ValueError, TypeError):
        return None
    if not isinstance(data, dict) or data.get("kind") not in KINDS or not isinstance(data.get("id", ""), str):
        return None
    return data["kind"], data.get("id", "")
