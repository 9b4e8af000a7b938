"""Waiting for adaptations without a thread: one Redis pub/sub listener per API process.

POST /v1/models/{id}/tasks registers a future for its task id before it sends the task, then
awaits it. The listener, an asyncio task started on first use, reads the channel the adapt
worker announces on (store/adaptation_events.py) and resolves the future of each task it
hears about with its announcement (the outcome the worker recorded: the request answers from it
without reading the row again). When the listener loses Redis (an error, or no answer to its
pings), every pending future resolves as `lost` and the requests re-read their rows: a 202 at worst.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Literal

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from store import adaptation_events
from store.adaptation_events import Announcement

log = logging.getLogger(__name__)

Unheard = Literal["timeout", "lost"]
Heard = Announcement | Unheard  # how a wait ended: the task's announcement, or why there was none

CONNECT_TIMEOUT_S = 1.0  # default: connecting, and waiting for the subscription's confirmation
READ_TIMEOUT_S = 5.0  # any one socket read or write
POLL_S = 1.0  # the listener looks at the time at least this often
PING_EVERY_S = 1.0  # a Redis that stops answering is noticed within 3 of these
RECONNECT_S = 1.0  # pause before connecting again after a loss


class AdaptationWaiter:
    def __init__(self, redis_url: str | None, connect_timeout: float = CONNECT_TIMEOUT_S) -> None:
        self.redis_url = redis_url
        self.connect_timeout = connect_timeout  # FEWSHOT_REDIS_TIMEOUT_SECONDS in the API
        self._futures: dict[str, asyncio.Future[Heard]] = {}
        self._subscribed = asyncio.Event()
        self._tried = asyncio.Event()  # the listener's first subscription succeeded or failed
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def listening(self) -> bool:
        return self._subscribed.is_set()

    async def expect(self, task_id: str) -> asyncio.Future[Heard]:
        """A future that resolves when task_id's adaptation is announced; register it before
        sending the task. Already `lost` when no listener is subscribed (the first request of a
        process gives a new listener up to connect_timeout to subscribe)."""
        self._start()
        future: asyncio.Future[Heard] = asyncio.get_running_loop().create_future()
        if not self._subscribed.is_set() and not self._tried.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tried.wait(), self.connect_timeout)
        if self._subscribed.is_set():
            self._futures[task_id] = future
        else:
            future.set_result("lost")
        return future

    async def wait(self, task_id: str, future: asyncio.Future[Heard], timeout: float) -> Heard:
        """How the wait ended: the task's announcement, timeout, or lost (the listener lost Redis)."""
        try:
            done, _ = await asyncio.wait({future}, timeout=timeout)
            return future.result() if done else "timeout"
        finally:
            self.forget(task_id)

    def forget(self, task_id: str) -> None:
        future = self._futures.pop(task_id, None)
        if future is not None and not future.done():
            future.cancel()

    async def close(self) -> None:
        if self._task is not None and self._loop is asyncio.get_running_loop():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._task = None
        self._lose_all()

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (a test client's): start again there
            self._loop, self._task, self._futures = loop, None, {}
            self._subscribed, self._tried = asyncio.Event(), asyncio.Event()
        if not self.redis_url:
            self._tried.set()
        elif self._task is None or self._task.done():
            self._task = loop.create_task(self._listen(self.redis_url), name="adaptation-waiter")

    async def _listen(self, url: str) -> None:
        while True:
            client = aioredis.Redis.from_url(
                url, socket_connect_timeout=self.connect_timeout, socket_timeout=READ_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),  # errors come here, and every waiter hears of them
            )
            pubsub = client.pubsub()
            try:
                try:
                    await self._subscribe(pubsub)
                finally:
                    self._tried.set()
                await self._dispatch(pubsub)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("adaptation listener lost Redis (%s: %s); reconnecting", type(exc).__name__, exc)
            except Exception:  # noqa: BLE001 - the listener must outlive any one bad message
                log.exception("adaptation listener failed; restarting it")
            finally:
                self._subscribed.clear()
                self._lose_all()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), self.connect_timeout)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.aclose(), self.connect_timeout)
            await asyncio.sleep(RECONNECT_S)

    async def _subscribe(self, pubsub: aioredis.client.PubSub) -> None:
        await asyncio.wait_for(pubsub.subscribe(adaptation_events.CHANNEL), self.connect_timeout)
        deadline = asyncio.get_running_loop().time() + self.connect_timeout
        while asyncio.get_running_loop().time() < deadline:
            message = await pubsub.get_message(timeout=POLL_S)
            if message is not None and message["type"] == "subscribe":
                self._subscribed.set()
                return
        raise TimeoutError(f"no subscription confirmed within {self.connect_timeout} s")

    async def _dispatch(self, pubsub: aioredis.client.PubSub) -> None:
        loop = asyncio.get_running_loop()
        heard = pinged = loop.time()
        while True:
            message = await pubsub.get_message(timeout=POLL_S)
            now = loop.time()
            if message is not None:
                heard = now
                if message["type"] == "message":
                    self._announce(adaptation_events.parse(message["data"]))
            if now - heard > 3 * PING_EVERY_S:
                raise TimeoutError(f"Redis answered nothing for {now - heard:.0f} s")
            if now - pinged > PING_EVERY_S:
                await asyncio.wait_for(pubsub.ping(), READ_TIMEOUT_S)  # its pong comes as a message
                pinged = now

    def _announce(self, announcement: Announcement | None) -> None:
        if announcement is None:
            return
        future = self._futures.pop(announcement.task_id, None)
        if future is not None and not future.done():
            future.set_result(announcement)

    def _lose_all(self) -> None:
        futures, self._futures = self._futures, {}
        for future in futures.values():
            if not future.done():
                future.set_result("lost")
