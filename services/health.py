"""Health: named checks, each timed and bounded, combined into healthy | degraded | unhealthy.

A critical check that fails makes the platform unhealthy (503); any other failure or warning makes it
degraded. Results are reused for a short TTL so that a health probe under load does not hammer the
database, Redis or the Ray GCS.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.clock import isoformat_z, utcnow

PASS, WARN, FAIL = "pass", "warn", "fail"


@dataclass(slots=True)
class CheckResult:
    status: str
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    response_time: float = 0.0  # milliseconds


# A probe returns a CheckResult, or raises to mean "fail"; it may block (it runs in a thread).
Probe = Callable[[], CheckResult]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    probe: Probe
    critical: bool


class HealthService:
    def __init__(
        self, checks: list[Check], *, timeout_s: float, cache_ttl_s: float, version: str, environment: str
    ) -> None:
        self._checks = checks
        self._timeout_s = timeout_s
        self._cache_ttl_s = cache_ttl_s
        self._version = version
        self._environment = environment
        self._started = time.monotonic()
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._lock = asyncio.Lock()

    async def report(self) -> dict[str, Any]:
        cached = self._cached
        if cached and time.monotonic() - cached[0] < self._cache_ttl_s:
            return cached[1]
        async with self._lock:  # one refresh at a time; others reuse its result
            cached = self._cached
            if cached and time.monotonic() - cached[0] < self._cache_ttl_s:
                return cached[1]
            report = await self._run_checks()
            self._cached = (time.monotonic(), report)
            return report

    async def _run_checks(self) -> dict[str, Any]:
        results = await asyncio.gather(*(self._run_one(check) for check in self._checks))
        checks = {check.name: result for check, result in zip(self._checks, results, strict=True)}
        status = "healthy"
        for check in self._checks:
            result = checks[check.name]
            if result.status == FAIL and check.critical:
                status = "unhealthy"
                break
            if result.status != PASS:
                status = "degraded"
        return {
            "status": status,
            "timestamp": isoformat_z(utcnow()),
            "version": self._version,
            "environment": self._environment,
            "uptime": int((time.monotonic() - self._started) * 1000),
            "checks": {
                name: {
                    "status": result.status,
                    "response_time": round(result.response_time, 3),
                    "message": result.message,
                    "details": result.details,
                }
                for name, result in checks.items()
            },
        }

    async def _run_one(self, check: Check) -> CheckResult:
        started = time.perf_counter()
        try:
            result = await asyncio.wait_for(asyncio.to_thread(check.probe), timeout=self._timeout_s)
        except TimeoutError:
            result = CheckResult(FAIL, f"no answer within {self._timeout_s:g}s")
        except Exception as exc:  # a failing probe is a result, not an error of the endpoint
            result = CheckResult(FAIL, f"{type(exc).__name__}: {exc}"[:300])
        result.response_time = (time.perf_counter() - started) * 1000
        return result
