from __future__ import annotations

import pytest

from core.rate_limit_spec import Limit
from services import rate_limit
from services.rate_limit import MemoryRateLimiter


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1000/3600", Limit(1000, 3600)),
        ("1000/h", Limit(1000, 3600)),
        ("10/15m", Limit(10, 900)),
        ("30/minute", Limit(30, 60)),
        ("5/s", Limit(5, 1)),
    ],
)
def test_limits_parse_from_settings_text(text: str, expected: Limit) -> None:
    assert Limit.parse(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "0/h", "10/0", "10/fortnight"])
def test_invalid_limits_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Limit.parse(text)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(rate_limit.time, "time", fake.time)
    return fake


def test_the_burst_is_the_limit_and_then_requests_are_refused(clock: FakeClock) -> None:
    limiter, limit = MemoryRateLimiter(), Limit(5, 60)
    decisions = [limiter.hit_now("k", limit) for _ in range(7)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    refused = decisions[5]
    assert refused.retry_after_s == 12  # one request refills every 60/5 s
    assert refused.headers()["Retry-After"] == "12"
    assert refused.headers()["X-RateLimit-Limit"] == "5"


def test_capacity_refills_evenly_over_the_window(clock: FakeClock) -> None:
    limiter, limit = MemoryRateLimiter(), Limit(5, 60)
    for _ in range(5):
        limiter.hit_now("k", limit)
    clock.now += 12
    assert limiter.hit_now("k", limit).allowed
    assert not limiter.hit_now("k", limit).allowed
    clock.now += 60
    assert limiter.hit_now("k", limit).remaining == 4


def test_keys_are_counted_separately(clock: FakeClock) -> None:
    limiter, limit = MemoryRateLimiter(), Limit(1, 60)
    assert limiter.hit_now("a", limit).allowed
    assert limiter.hit_now("b", limit).allowed
    assert not limiter.hit_now("a", limit).allowed


def test_memory_stays_bounded(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(max_keys=100)
    for index in range(1000):
        limiter.hit_now(f"k{index}", Limit(10, 60))
    assert len(limiter._tats) <= 100
