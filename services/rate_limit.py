"""Rate limiting with GCRA (the generic cell rate algorithm): `count` requests per `window_s`, spent as a
burst and refilled evenly.

With Redis, each decision is one EVALSHA of a Lua script that reads Redis's own clock, so every API
replica shares the same counters and no request beyond the limit is accepted. Without Redis (or while
it is unreachable), the same algorithm runs in memory: limits then hold per replica.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import redis
import redis.asyncio as aioredis

from core.rate_limit_spec import Limit

log = logging.getLogger("orchestrator.ratelimit")


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_at: int  # epoch seconds when the full burst is available again
    retry_after_s: int
    window_s: int

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
            "X-RateLimit-Window": str(self.window_s),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: Limit) -> Decision: ...

    async def aclose(self) -> None: ...


def _gcra(stored_tat_ms: float | None, now_ms: float, limit: Limit) -> tuple[bool, float, int, float]:
    """(allowed, new theoretical arrival time, remaining, retry_after_ms) — mirrors the Lua script."""
    window_ms = limit.window_s * 1000
    interval = window_ms / limit.count
    tat = max(stored_tat_ms or now_ms, now_ms)
    new_tat = tat + interval
    allow_at = new_tat - window_ms
    if now_ms < allow_at:
        return False, tat, 0, allow_at - now_ms
    return True, new_tat, int((now_ms - allow_at) // interval), 0.0


def _decision(allowed: bool, tat_ms: float, remaining: int, retry_ms: float, limit: Limit) -> Decision:
    return Decision(
        allowed=allowed,
        limit=limit.count,
        remaining=max(0, remaining),
        reset_at=math.ceil(tat_ms / 1000),
        retry_after_s=max(1, math.ceil(retry_ms / 1000)) if not allowed else 0,
        window_s=limit.window_s,
    )


class MemoryRateLimiter:
    """Per-process GCRA; the documented fallback when Redis is not configured or not reachable."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._tats: dict[str, float] = {}
        self._lock = threading.Lock()
        self._max_keys = max_keys

    async def hit(self, key: str, limit: Limit) -> Decision:
        return self.hit_now(key, limit)

    async def aclose(self) -> None:
        return None

    def hit_now(self, key: str, limit: Limit) -> Decision:
        now_ms = time.time() * 1000
        with self._lock:
            allowed, tat, remaining, retry = _gcra(self._tats.get(key), now_ms, limit)
            if allowed:
                self._tats[key] = tat
                if len(self._tats) > self._max_keys:
                    self._evict(now_ms)
        return _decision(allowed, tat, remaining, retry, limit)

    def _evict(self, now_ms: float) -> None:
        # A key whose arrival time has passed is a full bucket: forgetting it changes nothing.
        for stale in [key for key, tat in self._tats.items() if tat <= now_ms]:
            del self._tats[stale]
        while len(self._tats) > self._max_keys:
            self._tats.pop(next(iter(self._tats)))


# KEYS[1] = bucket; ARGV = count, window_ms. Returns {allowed, remaining, retry_after_ms, tat_ms}.
_GCRA_LUA = """
local count = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = window / count
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - window
if now < allow_at then
  return {0, 0, math.ceil(allow_at - now), math.ceil(tat)}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.max(1, math.ceil(new_tat - now)))
return {1, math.floor((now - allow_at) / interval), 0, math.ceil(new_tat)}
"""


class RedisRateLimiter:
    """Async, so that a decision never blocks the event loop nor costs a thread hop."""

    def __init__(self, client: aioredis.Redis, *, prefix: str, fallback: MemoryRateLimiter | None = None) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_GCRA_LUA)
        self._fallback = fallback or MemoryRateLimiter()
        self._last_warning = 0.0

    async def hit(self, key: str, limit: Limit) -> Decision:
        try:
            allowed, remaining, retry_ms, tat_ms = await self._script(
                keys=[f"{self._prefix}rl:{key}"], args=[limit.count, limit.window_s * 1000]
            )
        except (redis.RedisError, OSError) as exc:
            self._warn(exc)
            return self._fallback.hit_now(key, limit)
        return _decision(bool(allowed), float(tat_ms), int(remaining), float(retry_ms), limit)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning > 60:  # once a minute, not once a request
            self._last_warning = now
            log.warning("Redis unavailable for rate limiting, counting per replica meanwhile: %s", exc)
