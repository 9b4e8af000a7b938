"""Admission control for adaptations: a bounded number in flight per API process and per tenant.

An adaptation is in flight from the moment its POST is admitted until it is answered (a
`"wait": false` request only until its message is sent). Over the tenant's bound the answer
is 429 `too_many_adaptations`, over the process's bound 503 `overloaded`, both with
`Retry-After` and both before the request touches the database.

The process's bound protects that process and is counted in it. The tenant's bound is the
tenant's, whichever API process its requests reach (`fewshot serve` runs one per core): with
Redis it is counted there, in a sorted set of leases per tenant, so that a process that dies
holding slots gives them back when their lease ends. When Redis does not answer, the tenant's
slots are counted in the process, as without Redis: the bound must not take the API down with it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager, contextmanager

import redis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from starlette.concurrency import run_in_threadpool

from service.errors import ApiError, TooManyRequests, Unavailable

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1  # a slot frees as soon as one adaptation is answered: tens of milliseconds


class TooManyAdaptations(TooManyRequests):
    code = "too_many_adaptations"


class Overloaded(Unavailable):
    code = "overloaded"


# Drop the leases that ended, then take one if fewer than the bound are held. KEYS[1]: the tenant's
# sorted set; ARGV: now, the new lease's end, the bound, its member, the key's expiry (ms).
# Answers the count held before the call and 1 when a slot was taken, else 0.
_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[3]) then return {held, 0} end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {held, 1}
"""


class SharedTenantSlots:
    """Tenants' slots counted in Redis, shared by every API process that uses the same Redis.

    A slot is a lease that ends `lease_seconds` after it was taken (longer than any request holds
    one: the adaptation wait and its database calls), so a process that dies holding slots gives
    them back by then. Every call raises redis.RedisError when Redis does not answer."""

    def __init__(self, redis_url: str, lease_seconds: float, timeout: float = 0.25) -> None:
        self.lease_seconds = lease_seconds
        self._options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        self._url = redis_url
        self._redis = redis.Redis.from_url(redis_url, **self._options)
        self._take = self._redis.register_script(_TAKE)
        self._async: tuple[asyncio.AbstractEventLoop, aioredis.Redis, AsyncScript] | None = None

    @staticmethod
    def _key(tenant: str) -> str:
        return f"fewshot:admission:{tenant}"

    def _args(self, bound: int) -> tuple[str, list[float | int | str]]:
        member, now = uuid.uuid4().hex, time.time()
        return member, [now, now + self.lease_seconds, bound, member, int(self.lease_seconds * 2000)]

    def take(self, tenant: str, bound: int) -> tuple[str | None, int]:
        """(the lease's id, or None when the bound is reached; the slots held before the call)."""
        member, args = self._args(bound)
        held, taken = self._take(keys=[self._key(tenant)], args=args)
        return (member if taken else None), int(held)

    def give_back(self, tenant: str, lease: str) -> None:
        self._redis.zrem(self._key(tenant), lease)

    # The same on the event loop, through redis.asyncio (no thread-pool hop: under load an API
    # process measured 0.6-0.85 ms for each hop and call, 0.3 ms for both calls without the hops).
    # Only on the loop that opened the client (the API's lifespan opens it and closes it); a
    # request on another loop (a test client without lifespan) takes the blocking calls in the
    # thread pool, so no connection outlives the loop it belongs to.

    def open_async(self) -> None:
        """A client for the running event loop; `aclose` closes it."""
        client = aioredis.Redis.from_url(self._url, **self._options)
        self._async = (asyncio.get_running_loop(), client, client.register_script(_TAKE))

    async def aclose(self) -> None:
        held, self._async = self._async, None
        if held is not None and held[0] is asyncio.get_running_loop():
            await held[1].aclose()

    @property
    def on_this_loop(self) -> bool:
        """Whether the running loop has the client (`take_async` and `give_back_async` may be awaited)."""
        return self._async is not None and self._async[0] is asyncio.get_running_loop()

    async def take_async(self, tenant: str, bound: int) -> tuple[str | None, int]:
        assert self._async is not None
        member, args = self._args(bound)
        held, taken = await self._async[2](keys=[self._key(tenant)], args=args)
        return (member if taken else None), int(held)

    async def give_back_async(self, tenant: str, lease: str) -> None:
        assert self._async is not None
        await self._async[1].zrem(self._key(tenant), lease)


class Admission:
    """Adaptations in flight: counted in this process, and per tenant in `shared` when given (see
    the module's docstring); a bound of 0 turns that bound off."""

    def __init__(self, per_process: int, per_tenant: int, shared: SharedTenantSlots | None = None) -> None:
        self.per_process = per_process
        self.per_tenant = per_tenant
        self.shared = shared
        self._held: Counter[str | None] = Counter()  # slots held here: None for the process, else by tenant
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        return self._held[None]

    @property
    def by_tenant(self) -> dict[str, int]:
        return {k: n for k, n in self._held.items() if k is not None and n}

    def process_slot(self) -> AbstractContextManager[None]:
        """One of the process's slots, held inside the block; 503 `overloaded` when none is free."""
        return self._slot(None, self.per_process, lambda held: Overloaded(
            f"this API process has {held} adaptations in flight, its limit "
            f"(FEWSHOT_MAX_INFLIGHT_ADAPTATIONS={self.per_process}); retry in {RETRY_AFTER_S} s",
            retry_after=RETRY_AFTER_S,
        ))

    def tenant_slot(self, tenant: str) -> AbstractAsyncContextManager[None]:
        """One of the tenant's slots, held inside the block; 429 `too_many_adaptations` when none is free.
        Async: the Redis calls of shared slots are redis.asyncio's (or run in the thread pool), never a
        blocking call on the event loop."""
        return self._tenant_slot(tenant)

    @asynccontextmanager
    async def _tenant_slot(self, tenant: str) -> AsyncIterator[None]:
        lease = await self._take_shared(tenant) if self.shared is not None and self.per_tenant else None
        if lease is None:  # no Redis, no bound, or Redis did not answer: counted in this process
            with self._slot(tenant, self.per_tenant, self._tenant_refusal):
                yield
            return
        try:
            yield
        finally:
            await self._give_back_shared(tenant, lease)

    async def _take_shared(self, tenant: str) -> str | None:
        """The lease of a shared slot; None when Redis does not answer. Raises the 429 over the bound."""
        assert self.shared is not None
        try:
            if self.shared.on_this_loop:
                lease, held = await self.shared.take_async(tenant, self.per_tenant)
            else:
                lease, held = await run_in_threadpool(self.shared.take, tenant, self.per_tenant)
        except (redis.RedisError, OSError, TimeoutError):
            log.warning("tenant admission counted in this process: Redis did not answer", exc_info=True)
            return None
        if lease is None:
            raise self._tenant_refusal(held)
        return lease

    async def _give_back_shared(self, tenant: str, lease: str) -> None:
        assert self.shared is not None
        try:
            if self.shared.on_this_loop:
                await self.shared.give_back_async(tenant, lease)
            else:
                await run_in_threadpool(self.shared.give_back, tenant, lease)
        except (redis.RedisError, OSError, TimeoutError):  # the lease ends by itself
            log.warning("a tenant's admission slot not given back: Redis did not answer", exc_info=True)

    def _tenant_refusal(self, held: int) -> ApiError:
        return TooManyAdaptations(
            f"this tenant has {held} adaptations in flight, its limit "
            f"(FEWSHOT_MAX_INFLIGHT_ADAPTATIONS_PER_TENANT={self.per_tenant}); retry in {RETRY_AFTER_S} s",
            retry_after=RETRY_AFTER_S,
        )

    @contextmanager
    def _slot(self, holder: str | None, bound: int, refusal: Callable[[int], ApiError]) -> Iterator[None]:
        with self._lock:
            held = self._held[holder]
            if bound and held >= bound:
                raise refusal(held)
            self._held[holder] = held + 1
        try:
            yield
        finally:
            with self._lock:
                self._held[holder] -= 1
                if not self._held[holder]:
                    del self._held[holder]
