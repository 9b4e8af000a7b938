"""service.idempotency on a real database (SQLite and PostgreSQL): a claim older than the lease
is taken over by exactly one retry; the request that lost its claim rolls back; keys expire."""

from __future__ import annotations

import hashlib
import threading
from datetime import timedelta

import pytest
from alembic import command
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.errors import Conflict
from service.idempotency import Idempotency
from store.db import IdempotencyKey, Tenant, get_engine, init_db, session_factory, utcnow
from store.schema import alembic_config
from tests.db_urls import fresh_database

ROUTE = "POST /v1/jobs"


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path):
    with fresh_database(request.param, tmp_path) as url:
        init_db(url)
        yield url
        get_engine(url).dispose()


def idem(session: Session, key: str = "k1", **kwargs) -> Idempotency:  # type: ignore[no-untyped-def]
    return Idempotency(session, "tnt_a", key, ROUTE, **kwargs)


def make_object(session: Session, key: Idempotency, object_id: str) -> None:
    """What a route does: the object and its key's record in one transaction."""
    session.add(Tenant(id=object_id, name="stands in for a job"))
    key.record(object_id)
    session.commit()


def age_key(url: str, key: str = "k1", **ago: float) -> None:
    """Move the key's claim (claimed_at) or first use (created_at) into the past."""
    values = {column: utcnow() - timedelta(seconds=seconds) for column, seconds in ago.items()}
    with session_factory(url)() as session:
        session.execute(update(IdempotencyKey).where(IdempotencyKey.key == key).values(**values))
        session.commit()


def objects(url: str) -> list[str]:
    with session_factory(url)() as session:
        return list(session.scalars(select(Tenant.id).order_by(Tenant.id)))


def test_a_live_claim_is_in_progress_and_a_stale_one_is_taken_over(url):
    with session_factory(url)() as dead, session_factory(url)() as retry:
        assert idem(dead).begin("request") is None  # claimed; its process dies here
        with pytest.raises(Conflict) as info:
            idem(retry).begin("request")
        assert info.value.code == "idempotency_key_in_progress" and "gives up its key within" in info.value.message
        age_key(url, claimed_at=61)
        taker = idem(retry)
        assert taker.begin("request") is None and taker.claimed
        make_object(retry, taker, "obj_1")
        assert idem(retry).begin("request") == "obj_1"
        with pytest.raises(Conflict) as reused:
            idem(retry).begin("another request")
        assert reused.value.code == "idempotency_key_reused"
    assert objects(url) == ["obj_1"]


def test_of_many_retries_of_a_dead_request_exactly_one_takes_the_key(url):
    with session_factory(url)() as dead:
        assert idem(dead).begin("request") is None
    age_key(url, claimed_at=120)
    start, outcomes = threading.Barrier(6), []

    def retry() -> None:
        with session_factory(url)() as session:
            start.wait()
            try:
                outcomes.append(idem(session).begin("request"))
            except Conflict as exc:
                outcomes.append(exc.code)

    threads = [threading.Thread(target=retry) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes, key=str) == [None] + ["idempotency_key_in_progress"] * 5, outcomes


def test_a_request_that_outlived_its_lease_rolls_back_and_makes_nothing(url):
    with session_factory(url)() as slow, session_factory(url)() as retry:
        first = idem(slow)
        assert first.begin("request") is None
        age_key(url, claimed_at=90)  # still working after its lease: a retry takes the key
        second = idem(retry)
        assert second.begin("request") is None
        slow.add(Tenant(id="obj_slow", name="made too late"))
        with pytest.raises(Conflict, match="ran past its 60 s lease"):
            first.record("obj_slow")
        first.abandon()  # what the route's error path does: the insert goes, the key stays the retry's
        make_object(retry, second, "obj_retry")
        assert idem(retry).begin("request") == "obj_retry"
    assert objects(url) == ["obj_retry"]


def test_an_abandoned_request_frees_its_key(url):
    with session_factory(url)() as session:
        failed = idem(session)
        assert failed.begin("request") is None
        failed.abandon()
        assert idem(session).begin("another request") is None


def test_a_key_older_than_its_ttl_is_new_and_old_keys_are_purged(url):
    with session_factory(url)() as session:
        first = idem(session)
        assert first.begin("request") is None
        make_object(session, first, "obj_1")
        other = idem(session, key="k-old")
        assert other.begin("other") is None
        make_object(session, other, "obj_2")
    age_key(url, created_at=25 * 3600)
    age_key(url, key="k-old", created_at=25 * 3600)
    with session_factory(url)() as session:
        again = idem(session)  # the default TTL, 24 h: a new request under the old key
        assert again.begin("a different request") is None
        make_object(session, again, "obj_3")
        keys = {k.key: k.object_id for k in session.scalars(select(IdempotencyKey))}
    assert keys == {"k1": "obj_3"}  # k-old was purged by the claim
    with session_factory(url)() as session:  # a shortened TTL (1 s): the key expires sooner
        short = idem(session, key="k-short", ttl_hours=1 / 3600)
        assert short.begin("request") is None
        make_object(session, short, "obj_4")
        assert idem(session, key="k-short", ttl_hours=1 / 3600).begin("request") == "obj_4"
        age_key(url, key="k-short", created_at=2)
        assert idem(session, key="k-short", ttl_hours=1 / 3600).begin("request") is None


def test_an_expired_key_not_yet_purged_is_taken_over_as_new(url, monkeypatch):
    monkeypatch.setattr("service.idempotency.PURGE_BATCH", 0)
    with session_factory(url)() as session:
        first = idem(session)
        assert first.begin("request") is None
        make_object(session, first, "obj_1")
    age_key(url, created_at=25 * 3600)
    with session_factory(url)() as session:
        again = idem(session)
        assert again.begin("a different request") is None
        make_object(session, again, "obj_2")
        assert idem(session).begin("a different request") == "obj_2"
        row = session.scalars(select(IdempotencyKey)).one()
        assert row.object_id == "obj_2" and utcnow() - row.created_at < timedelta(minutes=1)


def test_the_migration_gives_stuck_keys_a_claim_that_a_retry_takes_over(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = get_engine(url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
        conn.exec_driver_sql(  # a key left in progress by a request killed before the upgrade
            "INSERT INTO idempotency_keys (tenant_id, key, route, request_hash, created_at) VALUES (?, ?, ?, ?, ?)",
            ("tnt_a", "k1", ROUTE, hashlib.sha256(b"request").hexdigest(),
             (utcnow() - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S.%f")),
        )
    init_db(url)
    with session_factory(url)() as session:
        taker = idem(session)
        assert taker.begin("request") is None
        make_object(session, taker, "obj_1")
    engine.dispose()


def test_a_fingerprint_function_is_called_only_for_a_request_with_a_key(url):
    calls: list[str] = []

    def fingerprint() -> str:
        calls.append("called")
        return "request"

    with session_factory(url)() as session:
        assert Idempotency(session, "tnt_a", None, ROUTE).begin(fingerprint) is None
        assert calls == []  # no key: nothing to compare, the body is not serialised
        first = idem(session)
        assert first.begin(fingerprint) is None and first.claimed and calls == ["called"]
        make_object(session, first, "obj_1")
    with session_factory(url)() as session:
        assert idem(session).begin("request") == "obj_1"  # the same fingerprint as the string itself
        with pytest.raises(Conflict):
            idem(session).begin(lambda: "another request")
