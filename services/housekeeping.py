"""Housekeeping: drop rows that only ever grow and whose purpose has expired (run by `orchestrator up`
after migrations, and periodically by the reconciler), and bring stored rows up to what the code expects
where a migration could not (run by `orchestrator up`)."""

from __future__ import annotations

from core.crypto import SecretBox
from persistence.db import Database
from services import sessions, webhooks


def purge_expired_credentials(db: Database) -> int:
    """Delete revocations and refresh tokens past their expiry; returns how many revocations went."""
    with db.transaction() as session:
        return sessions.purge_expired(session)


def encrypt_webhook_headers(db: Database, box: SecretBox) -> int:
    """Encrypt the webhook headers stored in clear before migration 0013 (it has no key to do so)."""
    with db.transaction() as session:
        return webhooks.encrypt_stored_headers(session, box)
