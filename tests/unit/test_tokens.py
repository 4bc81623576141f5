from __future__ import annotations

import time

import jwt
import pytest

from core.errors import AuthenticationFailed
from services.tokens import ACCESS, REFRESH, TokenService

SECRET = "a-test-secret-of-sufficient-length-0123456789"


def _service(**kwargs) -> TokenService:
    options = {"algorithm": "HS256", "issuer": "orchestrator", "access_ttl_s": 3600, "refresh_ttl_s": 86400}
    return TokenService(SECRET, **{**options, **kwargs})


def test_access_token_carries_the_documented_claims() -> None:
    service = _service()
    issued = service.issue_access(subject="user-1", role="agent")
    claims = service.decode(issued.token)
    assert {"sub", "role", "type", "jti", "iat", "exp"} <= claims.keys()
    assert claims["sub"] == "user-1" and claims["role"] == "agent" and claims["type"] == ACCESS
    assert issued.expires_in == 3600


def test_expired_token_is_rejected() -> None:
    service = _service()
    token = service.issue(subject="u", role="user", token_type=ACCESS, ttl_s=-10).token
    with pytest.raises(AuthenticationFailed, match="expired"):
        service.decode(token)


def test_tampered_token_is_rejected() -> None:
    service = _service()
    token = service.issue_access(subject="u", role="user").token
    header, _payload, signature = token.split(".")
    forged = jwt.encode(
        {**jwt.decode(token, options={"verify_signature": False}), "role": "admin"},
        "another-key-another-key-another-key",
        algorithm="HS256",
    )
    with pytest.raises(AuthenticationFailed):
        service.decode(forged)
    with pytest.raises(AuthenticationFailed):
        service.decode(f"{header}.{forged.split('.')[1]}.{signature}")


def test_alg_none_and_other_algorithms_are_rejected() -> None:
    service = _service()
    now = int(time.time())
    claims = {
        "sub": "u",
        "role": "admin",
        "type": ACCESS,
        "jti": "x",
        "iat": now,
        "exp": now + 60,
        "iss": "orchestrator",
    }
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    with pytest.raises(AuthenticationFailed):
        service.decode(unsigned)
    hs512 = jwt.encode(claims, SECRET, algorithm="HS512")
    with pytest.raises(AuthenticationFailed):
        service.decode(hs512)


def test_refresh_token_is_not_an_access_token() -> None:
    service = _service()
    refresh = service.issue_refresh(subject="u", role="user", family="f1")
    with pytest.raises(AuthenticationFailed, match="type"):
        service.decode(refresh.token)
    assert service.decode(refresh.token, expected_types=(REFRESH,))["fam"] == "f1"


def test_a_token_verified_before_is_still_refused_once_it_expires() -> None:
    service = _service()
    token = service.issue_access(subject="u", role="user", ttl_s=1).token
    first = service.decode(token)
    first["role"] = "admin"  # the caller's copy: what the next request sees is the token's own claims
    assert service.decode(token)["role"] == "user"
    deadline = time.monotonic() + 5
    while True:  # verified once, remembered: expiry must still end it (within a second here)
        try:
            service.decode(token)
        except AuthenticationFailed as exc:
            assert "expired" in str(exc)
            break
        assert time.monotonic() < deadline, "an expired token was still accepted"
