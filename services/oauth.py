"""OAuth 2.0 client credentials (RFC 6749 §4.4) for machine clients an admin registers."""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.errors import AuthenticationFailed, NotFound, PermissionDenied
from persistence.models import OAuthClient
from persistence.repositories.pages import Page, fetch_page
from services import sessions
from services.api_keys import hash_key
from services.principal import Role
from services.scopes import normalize_scopes, scope_allows
from services.tokens import IssuedToken, TokenService

CLIENT_ID_PREFIX = "oc_"
SECRET_PREFIX = "ocs_"  # noqa: S105 (a display prefix, not a secret)


def register_client(
    session: Session, *, name: str, role: Role, scopes: list[str], created_by: str
) -> tuple[OAuthClient, str]:
    secret = SECRET_PREFIX + secrets.token_hex(32)
    client = OAuthClient(
        client_id=CLIENT_ID_PREFIX + secrets.token_hex(12),
        secret_hash=hash_key(secret),
        name=name,
        role=role.value,
        scopes=normalize_scopes(scopes, field="scopes"),
        created_by=created_by,
    )
    session.add(client)
    session.flush()
    return client, secret


def list_clients(session: Session, *, page: int, limit: int) -> Page[OAuthClient]:
    query = select(OAuthClient).order_by(OAuthClient.created_at.desc(), OAuthClient.id.desc())
    return fetch_page(session, query, page=page, limit=limit)


def subject_of(client_id: str) -> str:
    """The `sub` of the tokens issued to a client; also the id under which they are revoked together."""
    return f"client:{client_id}"


def revoke_client(session: Session, client_pk: str, *, token_ttl_s: int) -> OAuthClient:
    """Revoke the client and every access token it holds (they name it as their subject)."""
    client = session.get(OAuthClient, client_pk)
    if client is None:
        raise NotFound("OAuth client not found")
    if client.revoked_at is None:
        client.revoked_at = utcnow()
        sessions.revoke_subject(session, subject_of(client.client_id), utcnow() + timedelta(seconds=token_ttl_s))
    return client


def exchange_client_credentials(
    session: Session, tokens: TokenService, *, client_id: str, client_secret: str, scope: str | None
) -> tuple[IssuedToken, list[str]]:
    client = session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
    # Compare against a hash even for an unknown client so that timing does not reveal client ids.
    expected = client.secret_hash if client is not None else hash_key("unknown-client")
    if not hmac.compare_digest(expected, hash_key(client_secret)) or client is None:
        raise AuthenticationFailed("Invalid client credentials")
    if client.revoked_at is not None:
        raise AuthenticationFailed("This client has been revoked")
    granted = list(client.scopes)
    if scope:
        # A client may ask for less than it was registered with, never more.
        requested = normalize_scopes(scope.replace(",", " ").split(), field="scope")
        for wanted in requested:
            within = "*" in granted if wanted == "*" else scope_allows(granted, *wanted.split(":", 1))
            if not within:
                raise PermissionDenied(f"Requested scope '{wanted}' exceeds the client's scopes")
        granted = requested
    issued = tokens.issue_access(
        subject=subject_of(client.client_id), role=client.role, scopes=granted, via="oauth_client"
    )
    return issued, granted
