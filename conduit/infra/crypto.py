"""Secrets at rest (model provider API keys, apps' webhook secrets): Fernet (AES-128-CBC +
HMAC-SHA256) with a key derived from the server secret (`Settings.secret_key()`) by HKDF-SHA256.

The derived key depends on the secret and on a purpose label, so a key made for provider
credentials can never decrypt anything else. Changing the server secret makes every stored
value undecryptable: `decrypt` then raises `DecryptionError` with a message that says so.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

CREDENTIALS = "conduit/provider-credentials/v1"
WEBHOOK_SECRETS = "conduit/webhook-secrets/v1"


class DecryptionError(ValueError):
    """A stored secret cannot be decrypted (another server secret, or a damaged value)."""


def derive_key(secret: str, purpose: str = CREDENTIALS) -> bytes:
    """A Fernet key (urlsafe base64 of 32 bytes) from the server secret and a purpose label."""
    if not secret:
        raise ValueError("the server secret is empty: cannot derive an encryption key")
    raw = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"conduit-hkdf-salt-v1",
        info=purpose.encode(),
    ).derive(secret.encode())
    return base64.urlsafe_b64encode(raw)


class Cipher:
    """Encrypts and decrypts text with one derived key."""

    def __init__(self, secret: str, purpose: str = CREDENTIALS) -> None:
        self._fernet = Fernet(derive_key(secret, purpose))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeError, ValueError):
            raise DecryptionError(
                "A stored secret cannot be decrypted: it was encrypted with another server "
                "secret (was CONDUIT_AUTH_SECRET_KEY or <data dir>/secret_key changed?) or it "
                "is damaged. Enter the credentials again."
            ) from None


@functools.lru_cache(maxsize=8)
def cipher(secret: str, purpose: str = CREDENTIALS) -> Cipher:
    """The (cached) cipher of a secret: callers pass `settings.secret_key()`."""
    return Cipher(secret, purpose)


def encrypt(plaintext: str, *, secret: str) -> str:
    return cipher(secret).encrypt(plaintext)


def decrypt(token: str, *, secret: str) -> str:
    return cipher(secret).decrypt(token)


def mask(secret: str | None) -> str | None:
    """What a route may show of a secret: never more than a small part of it.

    "sk-0123456789abcdef" → "sk-…cdef"; shorter secrets show less (a 9-character key: "…et")."""
    if not secret:
        return None
    size = len(secret)
    head = secret[:3] if size >= 16 else ""
    tail = secret[-4:] if size >= 12 else secret[-2:] if size >= 8 else ""
    return f"{head}…{tail}"
