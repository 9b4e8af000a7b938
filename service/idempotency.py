"""`Idempotency-Key` on creating POSTs: the same key (per tenant) returns the same object.

The key is claimed in its own committed row before the object is made, so two concurrent
requests with one key never both create; the loser gets 409 until the first finishes.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.errors import Conflict
from store.db import IdempotencyKey


class Idempotency:
    def __init__(self, session: Session, tenant: str, key: str | None, route: str) -> None:
        self.session = session
        self.tenant = tenant
        self.key = key
        self.route = route
        self._claimed = False

    def begin(self, fingerprint: str | bytes) -> str | None:
        """The id of the object this key already made, or None after claiming the key."""
        if self.key is None:
            return None
        digest = hashlib.sha256(fingerprint if isinstance(fingerprint, bytes) else fingerprint.encode()).hexdigest()
        self.session.commit()
        try:
            self.session.add(IdempotencyKey(tenant_id=self.tenant, key=self.key, route=self.route, request_hash=digest))
            self.session.commit()
            self._claimed = True
            return None
        except IntegrityError:
            self.session.rollback()
        row = self.session.scalar(
            select(IdempotencyKey).where(IdempotencyKey.tenant_id == self.tenant, IdempotencyKey.key == self.key)
        )
        assert row is not None
        if row.route != self.route or row.request_hash != digest:
            raise Conflict(
                f"Idempotency-Key {self.key!r} was used for a different request ({row.route}); use a new key",
                param="Idempotency-Key", code="idempotency_key_reused",
            )
        if row.object_id is None:
            raise Conflict(
                f"a request with Idempotency-Key {self.key!r} is still in progress; retry in a moment",
                param="Idempotency-Key", code="idempotency_key_in_progress",
            )
        return row.object_id

    def finish(self, object_id: str) -> None:
        if self._claimed:
            row = self.session.scalar(
                select(IdempotencyKey).where(IdempotencyKey.tenant_id == self.tenant, IdempotencyKey.key == self.key)
            )
            assert row is not None
            row.object_id = object_id
            self.session.commit()

    def abandon(self) -> None:
        """The request failed: the key may be used again."""
        if self._claimed:
            self.session.rollback()
            self.session.execute(
                delete(IdempotencyKey).where(IdempotencyKey.tenant_id == self.tenant, IdempotencyKey.key == self.key)
            )
            self.session.commit()
            self._claimed = False
