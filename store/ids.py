"""Opaque, prefixed, roughly time-ordered ids: job_, mdl_, tsk_, ds_."""

from __future__ import annotations

import secrets
import time


def new_id(prefix: str) -> str:
    # 12 hex digits of microseconds keep ids sortable by creation time for cursor paging.
    return f"{prefix}_{time.time_ns() // 1000:013x}{secrets.token_hex(6)}"
