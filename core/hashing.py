"""Digests of high-entropy secrets (API keys, client secrets): fast and indexable, compared in constant time."""

from __future__ import annotations

import hashlib


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
