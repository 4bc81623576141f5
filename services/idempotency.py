"""Idempotency keys: a client that did not get the answer to a creating request (a replica killed under it, a
timeout) sends it again with the same `Idempotency-Key`, and gets the resource the first one made instead of a
second one.

A key belongs to the caller (their user id) and the route. It is stored in the transaction that creates the
resource, so the two commit together: a request whose transaction failed left no key, and its retry creates.
Two requests with one key at once: the second's insert of the key fails on its primary key when the first
commits, its transaction (and resource) is rolled back, and it answers what the first made. The same key with
another body is a client error (422), never a silent replay. Keys are kept `ORCHESTRATOR_IDEMPOTENCY_TTL_S`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from core.clock import utcnow
from core.errors import FieldIssue, ValidationFailed
from persistence.models import IdempotencyKey

HEADER = "Idempotency-Key"


def digest(body: Any) -> str:
    """The request's fingerprint: its validated fields as canonical JSON."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str, separators=(",", ":")).encode()).hexdigest()


def find(session: Session, principal_id: str, route: str, key: str, request_hash: str, ttl_s: float) -> str | None:
    """The id of what this key already created (within `ttl_s`), None if nothing; 422 if it came with
    another request."""
    stored = session.get(IdempotencyKey, (principal_id, route, key))
    if stored is None or stored.created_at < utcnow() - timedelta(seconds=ttl_s):
        return None
    if stored.request_hash != request_hash:
        raise ValidationFailed(
            f"This {HEADER} was used with another request",
            details=[FieldIssue(HEADER, "a key names one request: send a new key for a new request")],
        )
    return stored.resource_id


class Taken(Exception):
    """A concurrent request with the same key created first: answer what it made."""


def remember(
    session: Session, principal_id: str, route: str, key: str, request_hash: str, resource_id: str, ttl_s: float
) -> None:
    """Store the key with what it created, in the creating transaction. A concurrent twin fails here: `Taken`
    if its key is already visible (SQLite's serialised writers), else on the primary key at flush or commit
    (IntegrityError). An expired key of the same name is replaced."""
    stored = session.get(IdempotencyKey, (principal_id, route, key), with_for_update=True, populate_existing=True)
    if stored is not None:
        if stored.created_at >= utcnow() - timedelta(seconds=ttl_s):
            raise Taken(key)
        session.delete(stored)
        session.flush()
    session.add(
        IdempotencyKey(
            principal_id=principal_id,
            route=route,
            key=key,
            request_hash=request_hash,
            resource_id=resource_id,
            created_at=utcnow(),
        )
    )
    session.flush()


def purge_expired(session: Session, ttl_s: float) -> int:
    cutoff = utcnow() - timedelta(seconds=ttl_s)
    return session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff)).rowcount or 0
