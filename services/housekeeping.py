"""Housekeeping: drop rows that only ever grow and whose purpose has expired (run by `orchestrator up`
after migrations, and periodically by the reconciler), and bring stored rows up to what the code expects
where a migration could not (run by `orchestrator up`)."""

from __future__ import annotations

from core.crypto import SecretBox
from persistence.db import Database
from services import idempotency, sessions, webhooks


def purge_expired_credentials(db: Database, idempotency_ttl_s: float | None = None) -> int:
    """Delete revocations and refresh tokens past their expiry, and idempotency keys older than
    `idempotency_ttl_s`; returns how many revocations went."""
    with db.transaction() as session:
        if idempotency_ttl_s is not None:
            idempotency.purge_expired(session, idempotency_ttl_s)
        return sessions.purge_expired(session)


def encrypt_webhook_headers(db: Database, box: SecretBox) -> int:
    """Encrypt the webhook headers stored in clear before migration 0013 (it has no key to do so)."""
    with db.transaction() as session:
        return webhooks.encrypt_stored_headers(session, box)
