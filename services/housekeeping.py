"""Start-up housekeeping: drop rows that only ever grow and whose purpose has expired.

Run by `orchestrator up` after migrations; the Reconciler (a later issue) will also run it periodically.
"""

from __future__ import annotations

from persistence.db import Database
from services import sessions


def purge_expired_credentials(db: Database) -> int:
    """Delete revocations and refresh tokens past their expiry; returns how many revocations went."""
    with db.transaction() as session:
        return sessions.purge_expired(session)
