"""API keys: `ao_` + 64 hex, stored as SHA-256, scoped, expiring, revocable.

Keys carry 256 bits of randomness, so a fast hash is enough (no dictionary to attack) and lets a key be
found by an indexed lookup on every request. Environment keys `ORCHESTRATOR_API_KEY_<NAME>=<key>:<role>`
bootstrap machine access without a database row.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.errors import AuthenticationFailed, NotFound, PermissionDenied
from core.hashing import sha256_hex
from core.settings import EnvApiKey
from persistence.models import ApiKey, User
from persistence.repositories.pages import Page, fetch_page
from services.principal import Principal, Role
from services.scopes import normalize_scopes, scope_allows

KEY_PREFIX = "ao_"
# last_used_at is written at most this often per key, so that a busy key does not cost a write per request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


hash_key = sha256_hex


def looks_like_api_key(credential: str) -> bool:
    return credential.startswith(KEY_PREFIX)


def create_api_key(
    session: Session, *, user_id: str, name: str, scopes: list[str] | None, expires_at: datetime | None
) -> tuple[ApiKey, str]:
    """The stored key and the key itself, which is never retrievable again."""
    key = KEY_PREFIX + secrets.token_hex(32)
    record = ApiKey(
        user_id=user_id,
        name=name,
        prefix=key[:11],
        key_hash=hash_key(key),
        scopes=normalize_scopes(scopes if scopes is not None else ["*"]),
        expires_at=expires_at,
    )
    session.add(record)
    session.flush()
    return record, key


def list_api_keys(session: Session, user_id: str, *, page: int, limit: int) -> Page[ApiKey]:
    query = select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    return fetch_page(session, query, page=page, limit=limit)


def scopes_within(principal: Principal, requested: list[str] | None) -> list[str]:
    """The scopes of a new key: a scoped caller (itself an API key) can only hand on what it holds."""
    if principal.scopes is None:
        return normalize_scopes(requested if requested is not None else ["*"])
    if requested is None:
        return list(principal.scopes)
    wanted = normalize_scopes(requested)
    for scope in wanted:
        within = "*" in principal.scopes if scope == "*" else scope_allows(principal.scopes, *scope.split(":", 1))
        if not within:
            raise PermissionDenied(f"A key cannot grant '{scope}', which the calling credential lacks")
    return wanted


def revoke_api_key(session: Session, principal: Principal, key_id: str) -> ApiKey:
    record = session.get(ApiKey, key_id)
    if record is None or (record.user_id != principal.user_id and not principal.is_admin):
        raise NotFound("API key not found")
    if record.revoked_at is None:
        record.revoked_at = utcnow()
    return record


def authenticate_env_key(env_keys: tuple[EnvApiKey, ...], key: str) -> Principal | None:
    digest = hash_key(key)
    for env_key in env_keys:
        if hmac.compare_digest(env_key.key_hash, digest):
            identity = f"env:{env_key.name}"
            return Principal(user_id=identity, role=Role.parse(env_key.role), via="env_api_key")
    return None


@dataclass(frozen=True, slots=True)
class KeyLookup:
    principal: Principal
    key_id: str
    stale_last_used: bool


def authenticate_api_key(session: Session, key: str) -> KeyLookup:
    row = session.execute(
        select(ApiKey, User.role, User.subscription_tier, User.is_active)
        .join(User, User.id == ApiKey.user_id)
        .where(ApiKey.key_hash == hash_key(key))
    ).first()
    if row is None:
        raise AuthenticationFailed("Invalid API key")
    record, role, tier, active = row
    now = utcnow()
    if record.revoked_at is not None:
        raise AuthenticationFailed("API key has been revoked")
    if record.expires_at is not None and record.expires_at <= now:
        raise AuthenticationFailed("API key has expired")
    if not active:
        raise AuthenticationFailed("Account not found or disabled")
    principal = Principal(
        user_id=record.user_id,
        role=Role.parse(role),
        via="api_key",
        scopes=tuple(record.scopes),
        tier=tier,
    )
    stale = record.last_used_at is None or now - record.last_used_at >= LAST_USED_RESOLUTION
    return KeyLookup(principal, record.id, stale)


def touch_last_used(session: Session, key_id: str) -> None:
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))
