"""Requests per minute per tenant, counted in Redis so that every API process shares the count."""

from __future__ import annotations

import logging
import time

import redis

from service.errors import TooManyRequests

log = logging.getLogger(__name__)


class RateLimiter:
    """A fixed one-minute window per tenant (INCR on `ratelimit:<tenant>:<minute>`).

    When Redis does not answer, requests pass: the limit protects the service, it must not
    take it down with Redis.
    """

    def __init__(self, redis_url: str | None, per_minute: int) -> None:
        self.per_minute = per_minute
        self._redis = (
            redis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
            if redis_url and per_minute > 0 else None
        )

    def check(self, tenant: str) -> None:
        if self._redis is None:
            return
        now = time.time()
        window = int(now // 60)
        key = f"fewshot:ratelimit:{tenant}:{window}"
        try:
            pipe = self._redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, 120)
            count = int(pipe.execute()[0])
        except redis.RedisError:
            log.warning("rate limit not checked: Redis did not answer", exc_info=True)
            return
        if count > self.per_minute:
            retry_after = max(1, int(60 * (window + 1) - now))
            raise TooManyRequests(
                f"more than {self.per_minute} requests in this minute for this tenant; retry in {retry_after} s",
                retry_after=retry_after,
            )
