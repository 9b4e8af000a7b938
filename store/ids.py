"""Opaque, prefixed, time-ordered ids: job_, mdl_, tsk_, ds_."""

from __future__ import annotations

import secrets
import threading
import time

_lock = threading.Lock()
_last_us = 0


def _next_microsecond() -> int:
    """Microseconds since the epoch, strictly increasing within this process: ids made in the same
    microsecond (a loop, a batch) still sort in the order they were made, so cursor paging by id
    lists them newest first without ties broken by the random suffix."""
    global _last_us
    with _lock:
        _last_us = max(time.time_ns() // 1000, _last_us + 1)
        return _last_us


def new_id(prefix: str) -> str:
    # 13 hex digits of microseconds keep ids sortable by creation time for cursor paging.
    return f"{prefix}_{_next_microsecond():013x}{secrets.token_hex(6)}"
