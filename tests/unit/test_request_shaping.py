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


def test_only_the_rightmost_forwarded_address_is_trusted() -> None:
    from core.settings import RateLimitSettings
    from serve_app.rate_limits import RateLimitPolicy
    from services.rate_limit import MemoryRateLimiter

    policy = RateLimitPolicy(RateLimitSettings(trust_forwarded_for=True), MemoryRateLimiter())
    scope = {"client": ("10.0.0.9", 1), "headers": [(b"x-forwarded-for", b"1.2.3.4, 203.0.113.7")]}
    assert policy.client_ip(scope) == "203.0.113.7"
    untrusting = RateLimitPolicy(RateLimitSettings(), MemoryRateLimiter())
    assert untrusting.client_ip(scope) == "10.0.0.9"
