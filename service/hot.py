"""Task, model and API-key rows cached in the API process, so a hot prediction runs no SQL.

A ready task never changes until it is deleted, a model never changes, and a key only appears
or is revoked: each row is kept for `ttl` seconds (FEWSHOT_HOT_CACHE_TTL_SECONDS, the safety
net) and dropped at once when any process says it changed (store/cache_events.py; a thread of
this process listens on the Redis channel). While the listener is not subscribed (starting, or
Redis lost) nothing is served from the caches; every (re)subscription starts them empty, so a
message lost while disconnected costs nothing. A row read while an invalidation arrives is
not kept (the generation counter), so a delete racing a read is never cached over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy import select

from service.auth import hash_key
from service.errors import Unauthorized
from store import cache_events
from store.db import LOCAL_TENANT, ApiKey, Model, Task, get_engine

log = logging.getLogger(__name__)

RECONNECT_S = 1.0


@dataclass(frozen=True)
class TaskRow:
    id: str
    tenant_id: str
    status: str
    model_id: str
    labels: list[Any] | None
    scalar_targets: bool
    artifact: str | None


@dataclass(frozen=True)
class ModelRow:
    """What a new task needs of its model's row: whose it is and its problem."""

    id: str
    tenant_id: str
    spec: dict[str, Any]


class _TtlLru:
    def __init__(self, capacity: int, ttl: float) -> None:
        self.capacity, self.ttl = capacity, ttl
        self._items: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[0] < time.monotonic():
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = (time.monotonic() + self.ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def discard(self, key: Any) -> None:
        with self._lock:
            self._items.pop(key, None)

    def discard_where(self, test: Callable[[Any], bool]) -> list[Any]:
        with self._lock:
            keys = [k for k, (_, v) in self._items.items() if test(v)]
            for k in keys:
                del self._items[k]
            return keys

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class HotRows:
    """The caches and their listener. `on_task_gone(task_id)` / `on_model_gone(model_id)` let the
    predictor drop what it holds for them too."""

    def __init__(self, db_url: str, redis_url: str | None, ttl: float, capacity: int) -> None:
        self.db_url = db_url
        self.redis_url = redis_url
        self.tasks = _TtlLru(capacity, ttl)
        self.models = _TtlLru(1024, ttl)
        self.keys = _TtlLru(4096, ttl)  # key digest -> tenant id
        self.keys_exist = _TtlLru(1, ttl)
        self.on_task_gone: Callable[[str], None] = lambda _: None
        self.on_model_gone: Callable[[str], None] = lambda _: None
        self._generation = 0
        self._live = threading.Event()
        self._started = False
        self._start_lock = threading.Lock()
        self.hits = self.misses = 0

    # The caches, read on the event loop (no I/O) and filled in the thread pool (SQL).

    @property
    def live(self) -> bool:
        self._start()
        return self._live.is_set()

    def cached_task(self, task_id: str) -> TaskRow | None:
        row = self.tasks.get(task_id) if self.live else None
        self.hits += row is not None
        return row

    def load_task(self, task_id: str) -> TaskRow | None:
        generation = self._generation
        with get_engine(self.db_url).connect() as conn:
            found = conn.execute(
                select(Task.id, Task.tenant_id, Task.status, Task.model_id, Task.labels, Task.scalar_targets, Task.artifact)
                .where(Task.id == task_id)
            ).first()
        self.misses += 1
        if found is None:
            return None
        row = TaskRow(*found)
        if row.status == "ready" and generation == self._generation:  # only rows that cannot change
            self.tasks.put(task_id, row)
        return row

    def model(self, model_id: str) -> ModelRow | None:
        """The model's id, tenant and spec: from the cache, else read (and kept: a model never
        changes, and its deletion is announced); None when there is no such model. Blocking."""
        row = self.models.get(model_id) if self.live else None
        if row is not None:
            self.hits += 1
            return row  # type: ignore[no-any-return]
        generation = self._generation
        with get_engine(self.db_url).connect() as conn:
            found = conn.execute(select(Model.id, Model.tenant_id, Model.spec).where(Model.id == model_id)).first()
        self.misses += 1
        if found is None:
            return None
        row = ModelRow(*found)
        if generation == self._generation:
            self.models.put(model_id, row)
        return row

    def model_row(self, model_id: str) -> Model:
        """The model's row (the predictor loads its learner from it once); blocking."""
        from sqlalchemy.orm import Session

        with get_engine(self.db_url).connect() as conn:
            model = Session(bind=conn).get(Model, model_id)
        if model is None:
            from service.errors import NotFound

            raise NotFound("model", model_id, param="model_id")
        return model

    def cached_tenant(self, key: str | None, require_auth: bool) -> str | None:
        """The tenant for the presented key from the cache, or None when the database must say."""
        if not self.live:
            return None
        if key is None:
            exist = self.keys_exist.get(True)
            if exist is None:
                return None
            if require_auth or exist:
                raise _missing_key()
            return LOCAL_TENANT
        return self.keys.get(hash_key(key))  # type: ignore[no-any-return]

    def load_tenant(self, key: str | None, require_auth: bool) -> str:
        """service.auth.authenticate's answer, through the database, cached; blocking."""
        generation = self._generation
        with get_engine(self.db_url).connect() as conn:
            if key is None:
                exist = conn.execute(select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1)).first() is not None
                if generation == self._generation:
                    self.keys_exist.put(True, exist)
                if require_auth or exist:
                    raise _missing_key()
                return LOCAL_TENANT
            digest = hash_key(key)
            tenant = conn.execute(
                select(ApiKey.tenant_id).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
            ).scalar()
        if tenant is None:
            raise Unauthorized("the API key is not valid", code="invalid_api_key")
        if generation == self._generation:
            self.keys.put(digest, tenant)
        return str(tenant)

    # Invalidation.

    def forget(self, kind: str, object_id: str) -> None:
        self._generation += 1
        if kind == "task":
            self.tasks.discard(object_id)
            self.on_task_gone(object_id)
        elif kind == "model":
            for task_id in self.tasks.discard_where(lambda row: row.model_id == object_id):
                self.on_task_gone(task_id)
            self.models.discard(object_id)
            self.on_model_gone(object_id)
        elif kind == "keys":
            self.keys.clear()
            self.keys_exist.clear()

    def publish(self, kind: str, object_id: str = "") -> None:
        """Forget here at once, and tell every other process."""
        self.forget(kind, object_id)
        cache_events.publish(self.redis_url, kind, object_id)

    def _clear(self) -> None:
        self._generation += 1
        for cache in (self.tasks, self.models, self.keys, self.keys_exist):
            cache.clear()

    def _start(self) -> None:
        if self._started or not self.redis_url:
            return
        with self._start_lock:
            if not self._started:
                self._started = True
                threading.Thread(target=self._listen, name="hot-rows-invalidations", daemon=True).start()

    def _listen(self) -> None:
        assert self.redis_url
        while True:
            client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=2.0, socket_timeout=5.0,
                                          health_check_interval=2)
            pubsub = client.pubsub()
            try:
                pubsub.subscribe(cache_events.CHANNEL)
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        pubsub.check_health()
                        continue
                    if message["type"] == "subscribe":
                        self._clear()  # whatever was missed while not subscribed
                        self._live.set()
                    elif message["type"] == "message":
                        parsed = cache_events.parse(message["data"])
                        if parsed is not None:
                            self.forget(*parsed)
            except Exception as exc:  # noqa: BLE001 - the listener must outlive Redis outages
                log.warning("cache invalidation listener lost Redis (%s: %s); caches off until it is back",
                            type(exc).__name__, exc)
            finally:
                self._live.clear()
                self._clear()
                try:
                    pubsub.close()
                    client.close()
                except Exception:  # noqa: BLE001
                    pass
            time.sleep(RECONNECT_S)


def _missing_key() -> Unauthorized:
    return Unauthorized(
        "this route needs an API key: send `Authorization: Bearer <key>` (make one with `fewshot keys create`)",
        code="missing_api_key",
    )
