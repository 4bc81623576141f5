from __future__ import annotations

import pytest

from core.text import snake_case
from persistence.repositories.pages import Page
from serve_app.request_context import correlation_id_from_headers


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sortBy", "sort_by"),
        ("createdAfter", "created_after"),
        ("page", "page"),
        ("agentId", "agent_id"),
        ("sort_by", "sort_by"),
        ("isActive", "is_active"),
    ],
)
def test_camel_case_query_names_become_snake_case(given: str, expected: str) -> None:
    assert snake_case(given) == expected


def test_correlation_id_prefers_caller_ids_and_refuses_unsafe_ones() -> None:
    assert correlation_id_from_headers([(b"X-Correlation-ID", b"abc-123")]) == "abc-123"
    assert correlation_id_from_headers([(b"x-request-id", b"req-9")]) == "req-9"
    generated = correlation_id_from_headers([(b"x-correlation-id", b"bad\r\nvalue")])
    assert generated != "bad\r\nvalue" and len(generated) == 36


def test_pagination_envelope_matches_the_contract() -> None:
    from starlette.requests import Request

    from serve_app.pagination import paginated

    request = Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/api/v1/users",
            "query_string": b"search=a&page=2",
            "headers": [],
            "server": ("test", 80),
            "scheme": "http",
            "root_path": "",
        }
    )
    body = paginated(request, "users", ["x"], Page(items=["x"], total=45, page=2, limit=20))
    assert body["pagination"] == {"page": 2, "limit": 20, "total": 45, "pages": 3, "has_next": True, "has_prev": True}
    assert body["links"]["next"] == "/api/v1/users?search=a&page=3&limit=20"
    assert body["links"]["prev"] == "/api/v1/users?search=a&page=1&limit=20"
    assert body["links"]["last"] == "/api/v1/users?search=a&page=3&limit=20"
    empty = paginated(request, "users", [], Page(items=[], total=0, page=1, limit=20))
    assert empty["pagination"]["pages"] == 1 and empty["links"]["next"] is None


def test_the_client_is_the_rightmost_address_that_is_not_a_trusted_proxy() -> None:
    from core.settings import RateLimitSettings
    from serve_app.rate_limits import RateLimitPolicy
    from services.rate_limit import MemoryRateLimiter

    def client_ip(peer: str, forwarded: str, **settings: object) -> str:
        policy = RateLimitPolicy(RateLimitSettings(**settings), MemoryRateLimiter())
        return policy.client_ip({"client": (peer, 1), "headers": [(b"x-forwarded-for", forwarded.encode())]})

    # Behind the platform's own proxy on loopback (trusted by default), the address it added is the client.
    assert client_ip("127.0.0.1", "1.2.3.4, 203.0.113.7") == "203.0.113.7"
    # A peer that is not a trusted proxy is the client, whatever header it sent.
    assert client_ip("198.51.100.2", "203.0.113.7") == "198.51.100.2"
    # A chain of trusted proxies is walked from the right; what the client wrote further left is not believed.
    assert client_ip("10.0.0.9", "1.2.3.4, 203.0.113.7, 10.0.0.5", trusted_proxies="10.0.0.0/8") == "203.0.113.7"
    assert client_ip("127.0.0.1", "203.0.113.7", trusted_proxies="[]") == "127.0.0.1"
    assert RateLimitSettings(trusted_proxies="10.1.2.3, ::1").trusted_proxies == ["10.1.2.3/32", "::1/128"]
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 network"):
        RateLimitSettings(trusted_proxies="proxy.internal")


def test_an_accounts_failed_logins_delay_the_next_attempt_twice_as_long_each_time() -> None:
    from services.login_throttle import LoginPolicy, MemoryLoginThrottle

    policy = LoginPolicy(free_failures=3, max_delay_s=8)
    assert [policy.delay_after(n) for n in range(1, 9)] == [0, 0, 1, 2, 4, 8, 8, 8]
    throttle = MemoryLoginThrottle(policy)
    throttle.succeeded_now("Owner@example.com", "192.0.2.1")  # the owner's usual address
    for _ in range(5):
        throttle.failed_now("owner@example.com")
    assert 3 <= throttle.retry_after_now("owner@example.com", "203.0.113.9") <= 4  # anyone else waits (4 s)
    assert throttle.retry_after_now("OWNER@example.com", "192.0.2.1") == 0  # the owner does not
    assert throttle.retry_after_now("someone@example.com", "203.0.113.9") == 0  # other accounts do not
    throttle.succeeded_now("owner@example.com", "192.0.2.1")
    assert throttle.retry_after_now("owner@example.com", "203.0.113.9") == 0  # a success forgets the failures
