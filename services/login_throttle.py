"""A ceiling on failed logins per account, whatever address they come from (credential stuffing).

The per-address-and-account limit (`ORCHESTRATOR_RATE_LIMIT_AUTH`) stops one client guessing; an attacker
spreading guesses over many addresses is slowed here instead. Once an account has `login_free_failures`
failures, the next attempt waits 1 s, and each further failure doubles the wait (2 s, 4 s … up to
`login_max_delay_s`); meanwhile attempts answer 429 with `Retry-After`. The owner is not locked out: an
address the account logged in from before (remembered 30 days, as a salted hash) skips the delay and keeps
only the per-address limit. A success forgets the failures; so does `login_failure_window_s` without one.

Accounts are keyed by a hash of the e-mail address as typed (lowercased), whether or not it exists, so the
answers do not tell which accounts exist. With Redis every API replica shares the counts; without it (or
while it is unreachable) each replica keeps its own.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis

log = logging.getLogger("orchestrator.ratelimit")

KNOWN_ADDRESS_TTL_S = 30 * 24 * 3600
MAX_KNOWN_ADDRESSES = 20


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    free_failures: int = 10
    max_delay_s: int = 900
    failure_window_s: int = 900

    def delay_after(self, failures: int) -> float:
        """Seconds the next attempt waits after this many failures in a row."""
        beyond = failures - self.free_failures
        return 0.0 if beyond < 0 else float(min(2**beyond, self.max_delay_s))


def account_key(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


def address_key(account: str, address: str) -> str:
    return hashlib.sha256(f"{account}|{address}".encode()).hexdigest()[:32]


class MemoryLoginThrottle:
    """Per process: the fallback without Redis, and while Redis is unreachable."""

    def __init__(self, policy: LoginPolicy, max_accounts: int = 100_000) -> None:
        self.policy = policy
        self._failures: dict[str, tuple[int, float, float]] = {}  # account -> (count, wait until, forget at)
        self._known: dict[str, dict[str, float]] = {}  # account -> {address hash: forget at}
        self._max_accounts = max_accounts
        self._lock = threading.Lock()

    async def retry_after(self, email: str, address: str) -> int:
        return self.retry_after_now(email, address)

    async def failed(self, email: str) -> None:
        self.failed_now(email)

    async def succeeded(self, email: str, address: str) -> None:
        self.succeeded_now(email, address)

    def retry_after_now(self, email: str, address: str) -> int:
        account, now = account_key(email), time.time()
        with self._lock:
            _count, until, forget_at = self._failures.get(account, (0, 0.0, 0.0))
            if now >= forget_at or now >= until:
                return 0
            if self._known.get(account, {}).get(address_key(account, address), 0.0) > now:
                return 0
        return math.ceil(until - now)

    def failed_now(self, email: str) -> None:
        account, now = account_key(email), time.time()
        with self._lock:
            count, _until, forget_at = self._failures.get(account, (0, 0.0, 0.0))
            count = count + 1 if now < forget_at else 1
            wait_until = now + self.policy.delay_after(count)
            self._failures[account] = (count, wait_until, wait_until + self.policy.failure_window_s)
            if len(self._failures) > self._max_accounts:
                self._failures = {k: v for k, v in self._failures.items() if v[2] > now}

    def succeeded_now(self, email: str, address: str) -> None:
        account, now = account_key(email), time.time()
        with self._lock:
            self._failures.pop(account, None)
            known = {k: t for k, t in self._known.get(account, {}).items() if t > now}
            known[address_key(account, address)] = now + KNOWN_ADDRESS_TTL_S
            self._known[account] = dict(sorted(known.items(), key=lambda item: item[1])[-MAX_KNOWN_ADDRESSES:])
            if len(self._known) > self._max_accounts:
                self._known.pop(next(iter(self._known)))


class RedisLoginThrottle:
    """Shared by every replica: a hash of `count` and `until` per account, a set of known addresses."""

    def __init__(self, client: aioredis.Redis, *, prefix: str, policy: LoginPolicy) -> None:
        self.policy = policy
        self._client = client
        self._prefix = prefix
        self._fallback = MemoryLoginThrottle(policy)
        self._last_warning = 0.0

    async def retry_after(self, email: str, address: str) -> int:
        account = account_key(email)
        try:
            until = await self._client.hget(self._key("lf", account), "until")
            if until is None or float(until) <= time.time():
                return 0
            known_until = await self._client.zscore(self._key("lk", account), address_key(account, address))
            if known_until is not None and known_until > time.time():
                return 0
            return math.ceil(float(until) - time.time())
        except (redis.RedisError, OSError) as exc:
            self._warn(exc)
            return self._fallback.retry_after_now(email, address)

    async def failed(self, email: str) -> None:
        key = self._key("lf", account_key(email))
        try:
            count = await self._client.hincrby(key, "count", 1)
            delay = self.policy.delay_after(count)
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hset(key, "until", str(time.time() + delay))
                pipe.expire(key, math.ceil(delay) + self.policy.failure_window_s)
                await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._warn(exc)
            self._fallback.failed_now(email)

    async def succeeded(self, email: str, address: str) -> None:
        account, now = account_key(email), time.time()
        known = self._key("lk", account)
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.delete(self._key("lf", account))
                pipe.zremrangebyscore(known, "-inf", now)
                pipe.zadd(known, {address_key(account, address): now + KNOWN_ADDRESS_TTL_S})
                pipe.zremrangebyrank(known, 0, -MAX_KNOWN_ADDRESSES - 1)
                pipe.expire(known, KNOWN_ADDRESS_TTL_S)
                await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._warn(exc)
        self._fallback.succeeded_now(email, address)

    def _key(self, kind: str, account: str) -> str:
        return f"{self._prefix}{kind}:{account}"

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning > 60:
            self._last_warning = now
            log.warning("Redis unavailable for the login ceiling, counting per replica meanwhile: %s", exc)
