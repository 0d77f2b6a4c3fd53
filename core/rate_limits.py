"""Requests per key per minute: a fixed window counted in Redis, or in memory when the
service runs embedded without Redis (then the API is one process, so memory is exact).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import redis

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    limit: int
    remaining: int
    reset_seconds: int
    allowed: bool


class RateLimiter(Protocol):
    def hit(self, bucket: str, limit: int) -> RateLimitResult: ...


def _window(now: float) -> tuple[int, int]:
    index = int(now // WINDOW_SECONDS)
    reset = max(1, math.ceil((index + 1) * WINDOW_SECONDS - now))
    return index, reset


def _result(limit: int, count: int, reset: int) -> RateLimitResult:
    return RateLimitResult(
        limit=limit, remaining=max(limit - count, 0), reset_seconds=reset, allowed=count <= limit
    )


class MemoryRateLimiter:
    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def hit(self, bucket: str, limit: int) -> RateLimitResult:
        index, reset = _window(time.time())
        with self._lock:
            if len(self._counts) > 10_000:
                self._counts = {k: v for k, v in self._counts.items() if k[1] >= index}
            count = self._counts.get((bucket, index), 0) + 1
            self._counts[(bucket, index)] = count
        return _result(limit, count, reset)


class RedisRateLimiter:
    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def hit(self, bucket: str, limit: int) -> RateLimitResult:
        index, reset = _window(time.time())
        key = f"imageextract:ratelimit:{bucket}:{index}"
        try:
            pipe = self.client.pipeline()
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECONDS + 5)
            count = int(pipe.execute()[0])
        except redis.RedisError:
            # Fail open: a Redis outage must not take the API down with it.
            log.warning("rate limiter unavailable; letting the request through", exc_info=True)
            return RateLimitResult(limit=limit, remaining=limit, reset_seconds=reset, allowed=True)
        return _result(limit, count, reset)


def create_rate_limiter(url: str | None) -> RateLimiter:
    if url and url.startswith(("redis://", "rediss://")):
        return RedisRateLimiter(url)
    return MemoryRateLimiter()
