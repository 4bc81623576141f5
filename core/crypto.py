"""Secrets the platform must read back (webhook signing secrets) are stored encrypted with Fernet
(AES-128-CBC + HMAC-SHA256, from `cryptography`), keyed from ``ORCHESTRATOR_ENCRYPTION_KEY``.

The configured value may be any high-entropy string; the Fernet key is derived from it with HKDF. A
comma-separated list encrypts with the first key and decrypts with any, so that keys can be rotated.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.settings import Settings

_INFO = b"orchestrator:secret-box:v1"


class DecryptionFailed(Exception):
    """The ciphertext was not made with any configured key (or was altered)."""


class SecretBox:
    def __init__(self, keys: tuple[str, ...]) -> None:
        if not keys:
            raise ValueError("no encryption key: call core.settings.resolve_secrets first")
        self._fernet = MultiFernet([Fernet(_derive(key)) for key in keys])

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        configured = settings.auth.encryption_key
        value = configured.get_secret_value() if configured is not None else ""
        return _box(tuple(part.strip() for part in value.split(",") if part.strip()))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, ValueError):
            raise DecryptionFailed("cannot decrypt: ORCHESTRATOR_ENCRYPTION_KEY changed?") from None


@lru_cache(maxsize=8)
def _box(keys: tuple[str, ...]) -> SecretBox:
    return SecretBox(keys)


def _derive(key: str) -> bytes:
    material = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(key.encode())
    return base64.urlsafe_b64encode(material)
