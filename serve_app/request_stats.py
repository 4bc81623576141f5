"""Requests served by this replica over the last minute, per route: counts, server errors and latency, for
`GET /system/metrics`. Each replica counts its own (Serve spreads requests over replicas); Ray's own Serve
metrics hold the cluster-wide figures."""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

WINDOW_S = 60
MAX_SAMPLES = 10_000


class RequestStats:
    """A sliding window of one-second buckets: route -> [requests, server errors, total ms, max ms], and the
    latest latencies (at most MAX_SAMPLES) for the percentiles."""

    def __init__(self, window_s: int = WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._started = clock()
        self._buckets: deque[tuple[int, dict[str, list[float]]]] = deque()
        self._samples: deque[tuple[float, float]] = deque(maxlen=MAX_SAMPLES)

    def record(self, route: str, status: int, duration_ms: float) -> None:
        now = self._clock()
        second = int(now)
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append((second, {}))
            self._expire(now)
        figures = self._buckets[-1][1].get(route)
        if figures is None:
            figures = self._buckets[-1][1][route] = [0, 0, 0.0, 0.0]
        figures[0] += 1
        figures[1] += status >= 500
        figures[2] += duration_ms
        figures[3] = max(figures[3], duration_ms)
        self._samples.append((now, duration_ms))

    def snapshot(self) -> dict[str, Any]:
        now = self._clock()
        self._expire(now)
        routes: dict[str, list[float]] = {}
        for _, bucket in self._buckets:
            for route, (count, errors, total, longest) in bucket.items():
                merged = routes.setdefault(route, [0, 0, 0.0, 0.0])
                merged[0] += count
                merged[1] += errors
                merged[2] += total
                merged[3] = max(merged[3], longest)
        latencies = sorted(ms for at, ms in self._samples if at > now - self.window_s)
        requests = int(sum(figures[0] for figures in routes.values()))
        observed_s = min(self.window_s, max(now - self._started, 1.0))
        return {
            "scope": "replica",
            "replica": _replica_id(),
            "window_s": self.window_s,
            "requests": requests,
            "rate_per_s": round(requests / observed_s, 3),
            "server_errors": int(sum(figures[1] for figures in routes.values())),
            "latency_ms": {
                "p50": _nearest_rank(latencies, 0.5),
                "p95": _nearest_rank(latencies, 0.95),
                "max": round(latencies[-1], 3) if latencies else None,
            },
            "routes": [
                {
                    "route": route,
                    "requests": int(count),
                    "server_errors": int(errors),
                    "mean_ms": round(total / count, 3),
                    "max_ms": round(longest, 3),
                }
                for route, (count, errors, total, longest) in sorted(routes.items(), key=lambda item: -item[1][0])
            ],
        }

    def _expire(self, now: float) -> None:
        oldest = int(now) - self.window_s
        while self._buckets and self._buckets[0][0] <= oldest:
            self._buckets.popleft()


def _nearest_rank(ordered: list[float], p: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[max(math.ceil(p * len(ordered)), 1) - 1], 3)


def _replica_id() -> str:
    try:
        from ray import serve

        context = serve.get_replica_context()
    except Exception:
        context = None
    return context.replica_id.unique_id if context is not None else f"pid-{os.getpid()}"


def route_of(scope: Scope) -> str:
    """`GET /api/v1/tasks/{task_id}`: the route template, so that a route's requests count together."""
    matched = (scope.get("fastapi") or {}).get("effective_route_context")
    path = getattr(matched, "path_format", None) or getattr(scope.get("route"), "path", None)
    return f"{scope.get('method', '')} {path}" if path else "unmatched"


class RequestStatsMiddleware:
    """Times every HTTP request into `stats` (a request whose handler raised counts as a 500)."""

    def __init__(self, app: ASGIApp, stats: RequestStats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self.stats.record(route_of(scope), status, (time.perf_counter() - started) * 1000)
