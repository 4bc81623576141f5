"""Login sessions: access + refresh tokens, rotation with theft detection, logout and revocation.

Every refresh token belongs to a family started at login. Refreshing marks the presented token used and
issues the next one of the family; presenting a used token again means it was copied, so the whole
family is revoked (the legitimate holder has to log in again, and so does the thief). Revocations of
access tokens (`jti`) and families (`fam`) are rows kept until the tokens would have expired anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, bindparam, delete, select, update
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.errors import AuthenticationFailed
from core.ids import new_id
from persistence.models import RefreshToken, TokenRevocation, User
from services.principal import Principal
from services.tokens import REFRESH, IssuedToken, TokenService


@dataclass(frozen=True, slots=True)
class SessionTokens:
    access: IssuedToken
    refresh: IssuedToken
    user: User


def _access_for(tokens: TokenService, user: User, family: str) -> IssuedToken:
    return tokens.issue_access(subject=user.id, role=user.role, fam=family, tier=user.subscription_tier)


def start_session(session: Session, tokens: TokenService, user: User) -> SessionTokens:
    """A new token family for a user who just proved who they are."""
    family = new_id()
    return _issue_pair(session, tokens, user, family)


def _issue_pair(session: Session, tokens: TokenService, user: User, family: str) -> SessionTokens:
    refresh = tokens.issue_refresh(subject=user.id, role=user.role, family=family)
    session.add(
        RefreshToken(
            jti=refresh.jti,
            family_id=family,
            user_id=user.id,
            expires_at=datetime.fromtimestamp(refresh.expires_at, UTC),
        )
    )
    return SessionTokens(access=_access_for(tokens, user, family), refresh=refresh, user=user)


def rotate_refresh_token(session: Session, tokens: TokenService, refresh_token: str) -> SessionTokens:
    claims = tokens.decode(refresh_token, expected_types=(REFRESH,))
    query = select(RefreshToken).where(RefreshToken.jti == claims["jti"])
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()  # two concurrent refreshes: one rotates, the other is a reuse
    stored = session.scalar(query)
    if stored is None or stored.revoked_at is not None:
        raise AuthenticationFailed("Refresh token has been revoked")
    if stored.used_at is not None:
        revoke_family(session, stored.family_id)
        # Committed even though the request fails: the theft response must stick.
        session.commit()
        raise AuthenticationFailed("Refresh token reuse detected: every session of this login was revoked")
    user = session.get(User, stored.user_id)
    if user is None or not user.is_active:
        raise AuthenticationFailed("Account not found or disabled")
    stored.used_at = utcnow()
    return _issue_pair(session, tokens, user, stored.family_id)


def revoke_family(session: Session, family: str) -> None:
    now = utcnow()
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    # Access tokens of the family die too: they carry `fam` and are checked against this row.
    _add_revocation(session, family, "family", now + timedelta(days=60))


def logout(session: Session, tokens: TokenService, principal: Principal, refresh_token: str | None) -> None:
    """Revoke the caller's access token and its whole family (and a refresh token given in the body)."""
    if principal.token_id and principal.token_expires_at:
        _add_revocation(session, principal.token_id, "jti", datetime.fromtimestamp(principal.token_expires_at, UTC))
    if principal.token_family:
        revoke_family(session, principal.token_family)
    if refresh_token:
        claims = tokens.decode(refresh_token, expected_types=(REFRESH,))
        if claims["sub"] != principal.user_id:
            raise AuthenticationFailed("This refresh token belongs to another account")
        revoke_family(session, claims["fam"])


def revoked(connection: Connection | Session, tokens: Sequence[tuple[str | None, ...]]) -> list[bool]:
    """For each token's (id, family, subject), whether any of them is revoked. Checked on every authenticated
    request; one indexed lookup serves the tokens of many concurrent requests."""
    named = [[str(value) for value in token if value] for token in tokens]
    wanted = sorted({value for values in named for value in values})
    found = set(connection.scalars(_REVOKED, {"ids": wanted})) if wanted else set()
    return [any(value in found for value in values) for values in named]


# Built once: a statement constructed per request costs more CPU than its round trip.
_REVOKED = select(TokenRevocation.id).where(TokenRevocation.id.in_(bindparam("ids", expanding=True)))


def revoke_subject(session: Session, subject: str, until: datetime) -> None:
    """Revoke every token naming `subject` (an OAuth client's tokens) until they would have expired."""
    _add_revocation(session, subject, "subject", until)


def purge_expired(session: Session) -> int:
    """Drop revocations and refresh tokens past their expiry (called by housekeeping)."""
    now = utcnow()
    result = session.execute(delete(TokenRevocation).where(TokenRevocation.expires_at < now))
    session.execute(delete(RefreshToken).where(RefreshToken.expires_at < now))
    return result.rowcount or 0


def _add_revocation(session: Session, token_id: str, kind: str, expires_at: datetime) -> None:
    if session.get(TokenRevocation, token_id) is None:
        session.add(TokenRevocation(id=token_id, kind=kind, expires_at=expires_at))
        session.flush()
