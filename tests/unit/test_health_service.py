from __future__ import annotations

import asyncio
import threading

import pytest

from services.health import FAIL, PASS, WARN, Check, CheckResult, HealthService


def _service(checks: list[Check], **kwargs) -> HealthService:
    options = {"timeout_s": 0.5, "cache_ttl_s": 0.0, "version": "test", "environment": "test"}
    return HealthService(checks, **{**options, **kwargs})


def _ok() -> CheckResult:
    return CheckResult(PASS, "ok")


def _boom() -> CheckResult:
    raise ConnectionError("refused")


def test_all_passing_is_healthy_with_timings() -> None:
    report = asyncio.run(_service([Check("database", _ok, True), Check("redis", _ok, False)]).report())
    assert report["status"] == "healthy"
    assert report["checks"]["database"]["status"] == PASS
    assert report["checks"]["database"]["response_time"] >= 0


@pytest.mark.parametrize(
    ("critical", "expected"),
    [(True, "unhealthy"), (False, "degraded")],
)
def test_a_failing_check_degrades_or_fails_by_criticality(critical: bool, expected: str) -> None:
    report = asyncio.run(_service([Check("database", _ok, True), Check("x", _boom, critical)]).report())
    assert report["status"] == expected
    assert report["checks"]["x"]["status"] == FAIL
    assert "refused" in report["checks"]["x"]["message"]


def test_a_warning_degrades() -> None:
    report = asyncio.run(_service([Check("ray", lambda: CheckResult(WARN, "outside"), False)]).report())
    assert report["status"] == "degraded"


def test_a_hanging_check_times_out_as_a_failure() -> None:
    release = threading.Event()

    def hang() -> CheckResult:
        release.wait(5)
        return _ok()

    try:
        report = asyncio.run(_service([Check("database", hang, True)], timeout_s=0.1).report())
    finally:
        release.set()
    assert report["status"] == "unhealthy"
    assert "no answer" in report["checks"]["database"]["message"]


def test_results_are_reused_within_the_ttl() -> None:
    calls = []

    def counted() -> CheckResult:
        calls.append(1)
        return _ok()

    service = _service([Check("database", counted, True)], cache_ttl_s=60)

    async def twice() -> None:
        await service.report()
        await service.report()

    asyncio.run(twice())
    assert len(calls) == 1
