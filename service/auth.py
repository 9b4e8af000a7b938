"""API keys: made with `fewshot keys create`, stored as sha256 digests, compared in constant time.

Without any key (and without FEWSHOT_REQUIRE_AUTH) every request acts as the single local
tenant; once one key exists, every /v1 route needs one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.errors import Unauthorized
from store.db import LOCAL_TENANT, ApiKey, Tenant, utcnow

KEY_PREFIX = "fsk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class NewKey:
    key: str  # shown once, never stored
    key_id: str
    tenant_id: str


def create_key(session: Session, tenant_id: str | None = None, tenant_name: str = "default") -> NewKey:
    """A new key for tenant_id, or for a new tenant when tenant_id is None."""
    if tenant_id is None:
        tenant = Tenant(name=tenant_name)
        session.add(tenant)
        session.flush()
        tenant_id = tenant.id
    elif session.get(Tenant, tenant_id) is None:
        if tenant_id != LOCAL_TENANT:
            raise ValueError(f"no tenant {tenant_id!r}; leave --tenant out to create a new one")
        # A key for the objects made before keys existed (by the local user).
        session.add(Tenant(id=LOCAL_TENANT, name="local"))
        session.flush()
    key = KEY_PREFIX + secrets.token_urlsafe(32)  # 256 bits
    row = ApiKey(tenant_id=tenant_id, prefix=key[:10], key_hash=hash_key(key))
    session.add(row)
    session.flush()
    return NewKey(key, row.id, tenant_id)


def revoke_key(session: Session, key_id: str) -> bool:
    """Mark the key revoked (False: no such live key). Callers tell the API processes
    (store.cache_events.publish(redis_url, "keys")): their caches drop keys at once."""
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    session.flush()
    return True


def keys_exist(session: Session) -> bool:
    return session.scalar(select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1)) is not None


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("the Authorization header must be `Bearer <API key>`", param="Authorization")
        return value.strip()
    return request.headers.get("x-api-key") or None


def authenticate(request: Request, session: Session, require_auth: bool) -> str:
    """The tenant id of the request's API key; the local tenant when no key is needed."""
    key = presented_key(request)
    if key is None:
        if require_auth or keys_exist(session):
            raise Unauthorized(
                "this route needs an API key: send `Authorization: Bearer <key>` (make one with `fewshot keys create`)",
                code="missing_api_key",
            )
        return LOCAL_TENANT
    digest = hash_key(key)
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)))
    if row is None or not hmac.compare_digest(row.key_hash.encode(), digest.encode()):
        raise Unauthorized("the API key is not valid", code="invalid_api_key")
    return row.tenant_id


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <API key>` (`fewshot keys create`)"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "the same API key in `X-API-Key`"},
}


def declare_security(schema: dict[str, Any]) -> None:
    """Declare how presented_key reads a key, so that /docs can Authorize: for every operation (the
    schema's top-level `security`), less those outside /v1, which take none.

    `{}` among the alternatives: without any key (and without FEWSHOT_REQUIRE_AUTH) none is needed.
    Top-level, not per operation: the client generator would then make every call need a key.
    """
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    schema["security"] = [{"bearer": []}, {"apiKey": []}, {}]
    for path, operations in schema.get("paths", {}).items():
        if not path.startswith("/v1/"):
            for operation in operations.values():
                operation["security"] = []
