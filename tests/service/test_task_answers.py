"""POST /v1/models/{id}/tasks answers a waited adaptation from the adapt worker's announcement
when it carries the recorded outcome, and reads the row when it does not (tests/e2e/test_hot_cache.py
checks the answer against GET /v1/tasks/{id} through real processes)."""

from __future__ import annotations

from datetime import UTC, datetime

from service.routes.tasks import _settled
from store.adaptation_events import Announcement
from store.db import Task

WHEN = datetime(2026, 12, 5, 1, 2, 3, tzinfo=UTC)


def _adapting() -> Task:
    return Task(id="tsk_a", tenant_id="tnt_local", model_id="mdl_a", status="adapting", labels=["x"], support_size=1)


def test_a_ready_or_failed_announcement_settles_the_answer():
    ready = _settled(_adapting(), Announcement("tsk_a", "ready", None, WHEN))
    assert ready is not None and (ready.status, ready.error, ready.ready_at) == ("ready", None, WHEN)
    failed = _settled(_adapting(), Announcement("tsk_a", "failed", "AdaptationDiverged: try a smaller inner_lr"))
    assert failed is not None and (failed.status, failed.error) == ("failed", "AdaptationDiverged: try a smaller inner_lr")


def test_anything_else_reads_the_row():
    for heard in (
        "timeout", "lost",
        Announcement("tsk_a", "ready"),  # an older worker's: no ready_at
        Announcement("tsk_a", "missing"),  # deleted while adapting
        Announcement("tsk_b", "ready", None, WHEN),  # another task's
        Announcement("tsk_a", "failed"),  # no error to show
    ):
        assert _settled(_adapting(), heard) is None, heard  # type: ignore[arg-type]
