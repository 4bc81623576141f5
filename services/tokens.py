"""JWT access and refresh tokens (HMAC-signed with the configured key and algorithm only)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

from core.errors import AuthenticationFailed
from core.ids import new_id

ACCESS = "access"
REFRESH = "refresh"
# Tokens remembered as verified (per process; emptied when full).
VERIFIED_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: int
    expires_in: int


class TokenService:
    def __init__(self, secret: str, *, algorithm: str, issuer: str, access_ttl_s: int, refresh_ttl_s: int):
        if not secret:
            raise ValueError("a JWT signing secret is required")
        self._secret = secret
        self._algorithm = algorithm
        self._issuer = issuer
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self._verified: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_settings(cls, settings: Any) -> TokenService:
        auth = settings.auth
        if auth.jwt_secret is None:
            raise ValueError("JWT secret not resolved: call core.settings.resolve_secrets first")
        return cls(
            auth.jwt_secret.get_secret_value(),
            algorithm=auth.jwt_algorithm,
            issuer=auth.jwt_issuer,
            access_ttl_s=auth.access_token_ttl_s,
            refresh_ttl_s=auth.refresh_token_ttl_s,
        )

    def issue(self, *, subject: str, role: str, token_type: str, ttl_s: int, **claims: Any) -> IssuedToken:
        now = int(time.time())
        jti = new_id()
        payload = {
            "sub": subject,
            "role": role,
            "type": token_type,
            "jti": jti,
            "iat": now,
            "exp": now + ttl_s,
            "iss": self._issuer,
            **{key: value for key, value in claims.items() if value is not None},
        }
        token = jwt.encode(payload, self._secret, algorithm=self._algorithm)
        return IssuedToken(token=token, jti=jti, expires_at=now + ttl_s, expires_in=ttl_s)

    def issue_access(self, *, subject: str, role: str, ttl_s: int | None = None, **claims: Any) -> IssuedToken:
        return self.issue(subject=subject, role=role, token_type=ACCESS, ttl_s=ttl_s or self.access_ttl_s, **claims)

    def issue_refresh(self, *, subject: str, role: str, family: str) -> IssuedToken:
        return self.issue(subject=subject, role=role, token_type=REFRESH, ttl_s=self.refresh_ttl_s, fam=family)

    def decode(self, token: str, *, expected_types: tuple[str, ...] = (ACCESS,)) -> dict[str, Any]:
        """Verify signature, algorithm, expiry, issuer and type; any failure is a 401.

        Tokens this platform issues carry `type`, `jti` and `iss`. A token without `type` is read as an
        access token minted by its key holder with only `sub`, `role`, `exp` and `iat`; it
        cannot be revoked individually. A token whose `type` or `iss` is wrong is always refused.

        A token verified before is not verified again until it expires: the same string with the same key
        has the same signature check, and only `exp` can turn a valid token invalid with time (revocation
        is the caller's check, on every request). This spares the HMAC and parsing of every request.
        """
        claims = self._verified.get(token)
        if claims is None or claims["exp"] <= time.time():
            claims = self._verify(token)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()
            self._verified[token] = claims
        token_type = claims.get("type")
        if token_type not in expected_types:
            raise AuthenticationFailed("Wrong token type for this operation")
        return dict(claims)

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[self._algorithm],
                options={"require": ["sub", "exp", "iat"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationFailed("Token has expired") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthenticationFailed("Invalid token") from exc
        if "iss" in claims and claims["iss"] != self._issuer:
            raise AuthenticationFailed("Invalid token")
        if "jti" not in claims:
            claims.setdefault("type", ACCESS)
            claims["via"] = "service"
        return claims
