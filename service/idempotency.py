"""`Idempotency-Key` on creating POSTs: the same key (per tenant) returns the same object.

A request claims its key in a committed row before it makes its object, so two concurrent
requests with one key never both create: the second gets 409 `idempotency_key_in_progress`.
The route records the object's id in the same transaction that stores the object (`record`),
so an object exists exactly when its key names it.

A request that dies holding its claim (the API was killed) leaves the key in progress. A retry
that finds the claim older than `idempotency_lease_seconds` takes it over with a conditional
UPDATE that only one retry can win, and makes the object. A request that outlived its lease
and was taken over finds its claim gone when it records, and rolls back: one object, never two.

Keys expire `idempotency_ttl_hours` after their first use: an expired key is new again, and
every claim purges up to PURGE_BATCH expired rows.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Row, delete, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from service.errors import Conflict
from store.db import IdempotencyKey, utcnow

log = logging.getLogger(__name__)

PURGE_BATCH = 100  # expired keys deleted per claim, at most
CLAIM_ATTEMPTS = 3  # a key purged or taken over between our read and our write: look again


class Idempotency:
    """One request's use of its `Idempotency-Key` (or of none: then every method is a no-op).

    A route calls `begin` before making anything: the id of the object the key already made,
    or None once this request holds the key. It then stores its object and calls `record`
    in the same transaction before committing (or `finish`, which commits), and `abandon`
    when it fails, so that the key may be used again.
    """

    def __init__(
        self, session: Session, tenant: str, key: str | None, route: str,
        lease_seconds: float = 60.0, ttl_hours: float = 24.0,
    ) -> None:
        self.session = session
        self.tenant = tenant
        self.key = key
        self.route = route
        self.lease = timedelta(seconds=lease_seconds)
        self.ttl = timedelta(hours=ttl_hours)
        self._row_id: int | None = None  # our claim: the row and the token that says it is ours
        self._token: str | None = None

    @property
    def claimed(self) -> bool:
        return self._token is not None

    def begin(self, fingerprint: str | bytes | Callable[[], str | bytes]) -> str | None:
        """The id of the object this key already made, or None after claiming the key.
        `fingerprint`: what identifies the request, or a function that gives it, called only when
        the request has a key (most have none: their bodies are not serialised for nothing).

        409 when the key was used for another request, or while another live request holds it.
        """
        if self.key is None:
            return None
        if callable(fingerprint):
            fingerprint = fingerprint()
        digest = hashlib.sha256(fingerprint if isinstance(fingerprint, bytes) else fingerprint.encode()).hexdigest()
        self.session.commit()
        self._purge_expired()
        for _ in range(CLAIM_ATTEMPTS):
            if self._insert_claim(digest):
                return None
            row = self._row()
            if row is None:  # purged since our insert failed
                continue
            now = utcnow()
            if row.created_at < now - self.ttl:  # expired: the key is new again
                if self._take_over(row.id, IdempotencyKey.created_at < now - self.ttl, digest):
                    return None
                continue
            if row.route != self.route or row.request_hash != digest:
                raise Conflict(
                    f"Idempotency-Key {self.key!r} was used for a different request ({row.route}); use a new key",
                    param="Idempotency-Key", code="idempotency_key_reused",
                )
            if row.object_id is not None:
                return row.object_id
            if row.claimed_at < now - self.lease:  # the request that claimed it died
                stale = (IdempotencyKey.object_id.is_(None)) & (IdempotencyKey.claimed_at < now - self.lease)
                if self._take_over(row.id, stale):
                    log.warning("Idempotency-Key %r: claim of %s abandoned, taken over", self.key, row.claimed_at)
                    return None
                continue
            raise self._in_progress(row.claimed_at + self.lease - now)
        raise self._in_progress(self.lease)  # purged or taken over under us each time: busy

    def record(self, object_id: str) -> None:
        """Name the object in the caller's open transaction, which stores the object too.

        Raises 409 when this request's claim was taken over (it ran past its lease), after
        rolling the transaction back: the object the other request makes is the only one.
        """
        if self._token is None:
            return
        result = self.session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.id == self._row_id, IdempotencyKey.claim_token == self._token)
            .values(object_id=object_id)
            .execution_options(synchronize_session=False)
        )
        if cast(CursorResult[Any], result).rowcount != 1:
            self.session.rollback()  # the object too: the request that took the key over makes it
            self._token = None  # not ours any more: abandon must not delete it
            raise Conflict(
                f"the request with Idempotency-Key {self.key!r} ran past its {self.lease.total_seconds():g} s "
                "lease and a retry took it over; retry with the same key to get the object it makes",
                param="Idempotency-Key", code="idempotency_key_in_progress",
            )

    def finish(self, object_id: str) -> None:
        """`record` and commit. A route that stores its object in the same transaction instead
        calls `record` before its own commit: a request killed in between then leaves neither."""
        self.record(object_id)
        self.session.commit()

    def release(self) -> None:
        """Drop this request's claim in the caller's open transaction (it made nothing)."""
        if self._token is not None:
            self.session.execute(
                delete(IdempotencyKey)
                .where(IdempotencyKey.id == self._row_id, IdempotencyKey.claim_token == self._token)
                .execution_options(synchronize_session=False)
            )
            self._token = None

    def abandon(self) -> None:
        """The request failed: roll back what it did; the key may be used again."""
        if self._token is not None:
            self.session.rollback()
            self.release()
            self.session.commit()

    def _insert_claim(self, digest: str) -> bool:
        now, token = utcnow(), secrets.token_hex(16)
        row = IdempotencyKey(
            tenant_id=self.tenant, key=self.key, route=self.route, request_hash=digest,
            created_at=now, claimed_at=now, claim_token=token,
        )
        try:
            self.session.add(row)
            self.session.flush()
            self._row_id = row.id
            self.session.commit()
        except IntegrityError:
            self.session.rollback()
            return False
        finally:  # rows are read and written by statement: keep none in the identity map
            if row in self.session:
                self.session.expunge(row)
        self._token = token
        return True

    def _take_over(self, row_id: int, condition: Any, digest: str | None = None) -> bool:
        """Claim the row if `condition` still holds: of two retries, exactly one wins."""
        now, token = utcnow(), secrets.token_hex(16)
        values: dict[str, Any] = {"claimed_at": now, "claim_token": token}
        if digest is not None:  # an expired key starts again as this request's
            values.update(route=self.route, request_hash=digest, object_id=None, created_at=now)
        result = self.session.execute(
            update(IdempotencyKey).where(IdempotencyKey.id == row_id, condition).values(**values)
            .execution_options(synchronize_session=False)
        )
        won = cast(CursorResult[Any], result).rowcount == 1
        self.session.commit()
        if won:
            self._row_id, self._token = row_id, token
        return won

    def _row(self) -> Row[Any] | None:
        """The key's row as plain columns (no ORM object: rows are written by statement)."""
        k = IdempotencyKey
        return self.session.execute(
            select(k.id, k.route, k.request_hash, k.object_id, k.created_at, k.claimed_at)
            .where(k.tenant_id == self.tenant, k.key == self.key)
        ).first()

    def _purge_expired(self) -> None:
        """Delete a bounded batch of expired keys (any tenant's); best effort."""
        expired = select(IdempotencyKey.id).where(IdempotencyKey.created_at < utcnow() - self.ttl).limit(PURGE_BATCH)
        try:
            self.session.execute(
                delete(IdempotencyKey).where(IdempotencyKey.id.in_(expired)).execution_options(synchronize_session=False)
            )
            self.session.commit()
        except DBAPIError:  # a concurrent purge holds the same rows: the next claim purges
            self.session.rollback()
            log.debug("purge of expired idempotency keys skipped", exc_info=True)

    def _in_progress(self, remaining: timedelta) -> Conflict:
        seconds = max(1, int(remaining.total_seconds() + 0.999))
        return Conflict(
            f"a request with Idempotency-Key {self.key!r} is still in progress; retry in a moment "
            f"(a request that died gives up its key within {seconds} s)",
            param="Idempotency-Key", code="idempotency_key_in_progress",
        )

