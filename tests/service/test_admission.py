"""Admission control and the answers of a saturated API: slots per process and per tenant
(429/503 with Retry-After), JSON errors for a busy or failing database and for any unexpected
exception, and the waiter that hears the adapt worker's announcements on a real Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from service.adaptation_waiter import AdaptationWaiter, Heard
from service.admission import Admission, Overloaded, SharedTenantSlots, TooManyAdaptations
from service.errors import Unavailable, install_error_handlers
from store import adaptation_events
from store.adaptation_events import Announcement
from tests.e2e.api_support import assert_error
from tests.e2e.server import free_port

REDIS_URL = "redis://127.0.0.1:6379/13"


def test_slots_are_bounded_per_process_and_per_tenant_and_given_back():
    async def scenario() -> None:
        admission = Admission(per_process=3, per_tenant=2)
        with admission.process_slot(), admission.process_slot():
            async with admission.tenant_slot("a"), admission.tenant_slot("a"):
                with pytest.raises(TooManyAdaptations) as too_many:
                    async with admission.tenant_slot("a"):
                        pass
                assert too_many.value.status == 429 and too_many.value.retry_after >= 1
                with admission.process_slot():
                    async with admission.tenant_slot("b"):  # another tenant still gets in
                        with pytest.raises(Overloaded) as overloaded:
                            with admission.process_slot():
                                pass
                        assert overloaded.value.status == 503 and overloaded.value.code == "overloaded"
        assert admission.in_flight == 0 and admission.by_tenant == {}
        with pytest.raises(RuntimeError):  # a failing request gives its slots back too
            with admission.process_slot():
                async with admission.tenant_slot("a"):
                    raise RuntimeError
        assert admission.in_flight == 0 and admission.by_tenant == {}
        unbounded = Admission(per_process=0, per_tenant=0)
        with unbounded.process_slot(), unbounded.process_slot():
            async with unbounded.tenant_slot("a"), unbounded.tenant_slot("a"):
                assert unbounded.in_flight == 2

    asyncio.run(scenario())


def _held_in_redis(tenant: str) -> int:
    return int(redis.Redis.from_url(REDIS_URL).zcard(f"fewshot:admission:{tenant}"))


def test_a_tenants_bound_holds_across_api_processes_through_redis():
    """Two API processes (two Admissions on one Redis): the tenant's slots are counted once for both,
    given back when a request ends, and a dead process's leases end by themselves."""
    async def scenario() -> None:
        first, second = (Admission(per_process=10, per_tenant=2, shared=SharedTenantSlots(REDIS_URL, 60)) for _ in range(2))
        first.shared.open_async()  # type: ignore[union-attr]  # redis.asyncio on this loop (as the API's lifespan does);
        # the second takes the blocking calls in the thread pool (a loop without the client): both count in one set
        async with first.tenant_slot("a"), second.tenant_slot("a"):
            for process in (first, second):
                with pytest.raises(TooManyAdaptations) as refused:
                    async with process.tenant_slot("a"):
                        pass
                assert "2 adaptations in flight" in refused.value.message
            async with second.tenant_slot("b"):  # another tenant still gets in
                pass
        async with first.tenant_slot("a"), second.tenant_slot("a"):  # both given back
            pass
        assert _held_in_redis("a") == 0 and first.by_tenant == second.by_tenant == {}
        dying = SharedTenantSlots(REDIS_URL, lease_seconds=0.3)
        assert dying.take("a", 2)[0] and dying.take("a", 2)[0]  # a process that dies holding both
        with pytest.raises(TooManyAdaptations):
            async with first.tenant_slot("a"):
                pass
        await asyncio.sleep(0.4)
        async with first.tenant_slot("a"), second.tenant_slot("a"):  # their leases have ended
            pass
        await first.shared.aclose()  # type: ignore[union-attr]

    redis.Redis.from_url(REDIS_URL).delete("fewshot:admission:a", "fewshot:admission:b")
    asyncio.run(scenario())


def test_a_tenants_slots_are_counted_in_the_process_when_redis_does_not_answer():
    async def scenario(on_the_loop: bool) -> None:
        port = free_port()  # nothing listens there
        admission = Admission(per_process=10, per_tenant=1, shared=SharedTenantSlots(f"redis://127.0.0.1:{port}/0", 60))
        if on_the_loop:
            admission.shared.open_async()  # type: ignore[union-attr]
        async with admission.tenant_slot("a"):
            assert admission.by_tenant == {"a": 1}
            with pytest.raises(TooManyAdaptations):
                async with admission.tenant_slot("a"):
                    pass
        assert admission.by_tenant == {}
        await admission.shared.aclose()  # type: ignore[union-attr]

    for on_the_loop in (True, False):
        asyncio.run(scenario(on_the_loop))


def test_saturation_and_failures_are_json_errors_with_retry_after():
    app = FastAPI()
    install_error_handlers(app)
    admission = Admission(per_process=1, per_tenant=1)
    errors = {
        "pool": PoolTimeout("QueuePool limit of size 20 overflow 20 reached"),
        "database": OperationalError("SELECT 1", {}, ConnectionRefusedError("refused")),
        "queue": Unavailable("the queue is down"),
        "bug": KeyError("oops"),
    }

    @app.get("/fail/{what}")
    def fail(what: str) -> None:
        raise errors[what]

    @app.get("/admit")
    async def admit() -> None:
        with admission.process_slot():
            async with admission.tenant_slot("t"), admission.tenant_slot("t"):
                pass

    with TestClient(app, raise_server_exceptions=False) as c:
        for what, status, code in (("pool", 503, "overloaded"), ("database", 503, "database_unavailable"),
                                   ("queue", 503, "unavailable")):
            r = c.get(f"/fail/{what}")
            assert_error(r, status, code)
            assert int(r.headers["retry-after"]) >= 1
        assert_error(c.get("/fail/bug"), 500, "internal_error")
        r = c.get("/admit")
        assert_error(r, 429, "too_many_adaptations")
        assert r.headers["retry-after"] == "1"


def test_waiter_hears_announcements_and_reports_timeouts():
    ready = Announcement("tsk_heard", "ready", None, datetime(2026, 12, 5, 1, 2, 3, 456789, tzinfo=UTC))

    async def scenario() -> list[Heard]:
        waiter = AdaptationWaiter(REDIS_URL)
        try:
            heard = await waiter.expect("tsk_heard")
            old = await waiter.expect("tsk_old")
            silent = await waiter.expect("tsk_silent")
            assert waiter.listening
            await asyncio.to_thread(adaptation_events.announce_many, REDIS_URL, [ready])
            await asyncio.to_thread(adaptation_events.announce, REDIS_URL, "tsk_old", "ready")  # status only
            return await asyncio.gather(
                waiter.wait("tsk_heard", heard, 10), waiter.wait("tsk_old", old, 10), waiter.wait("tsk_silent", silent, 0.3)
            )
        finally:
            await waiter.close()

    redis.Redis.from_url(REDIS_URL).ping()
    assert asyncio.run(scenario()) == [ready, Announcement("tsk_old", "ready"), "timeout"]


@pytest.mark.parametrize(("message", "expected"), [
    ('{"task_id": "tsk_a", "status": "failed", "error": "AdaptationDiverged: x", "ready_at": null}',
     Announcement("tsk_a", "failed", "AdaptationDiverged: x")),
    ('{"task_id": "tsk_a", "status": "ready"}', Announcement("tsk_a", "ready")),  # an older worker's
    ('{"task_id": "tsk_a", "status": "ready", "ready_at": "2026-12-05T01:02:03"}', Announcement("tsk_a", "ready")),  # no zone
    ('{"task_id": "tsk_a", "status": "ready", "ready_at": "soon", "error": 3}', Announcement("tsk_a", "ready")),
    ('{"task_id": 7, "status": "ready"}', None), ('{"status": "ready"}', None), ("[1]", None), ("not json", None),
])
def test_announcements_parse_or_drop_what_does_not(message, expected):
    assert adaptation_events.parse(message) == expected


def test_waiter_without_redis_says_lost_at_once():
    async def scenario() -> str:
        waiter = AdaptationWaiter(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
        try:
            future = await waiter.expect("tsk_x")
            return await waiter.wait("tsk_x", future, 30)
        finally:
            await waiter.close()

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == "lost"
