"""Signed, expiring file links (Dify's `/files/{id}/file-preview?timestamp=…&nonce=…&sign=…`).

`sign` is the urlsafe base64 of HMAC-SHA256 over `file-preview|<file id>|<timestamp>|<nonce>`,
keyed by a key derived from the server secret (`Settings.secret_key()`) for this purpose
only: a console token's key never signs a file link, nor the reverse. The signature binds the
file id, so a link opens that one file; it is valid for `max_age` seconds after `timestamp`.
Every server and worker must share the secret, or a link signed by one fails on another.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from conduit.infra.crypto import derive_key

FILE_LINKS = "conduit/file-links/v1"


class SignatureError(ValueError):
    """A signed link does not hold: its signature is wrong, or it has expired."""


class ExpiredSignature(SignatureError):
    """The signature is right but older than its lifetime."""


@dataclass(frozen=True)
class Signed:
    """The query parameters of a signed link."""

    timestamp: str
    nonce: str
    sign: str

    def params(self) -> dict[str, str]:
        return {"timestamp": self.timestamp, "nonce": self.nonce, "sign": self.sign}


@functools.lru_cache(maxsize=8)
def _key(secret: str) -> bytes:
    return base64.urlsafe_b64decode(derive_key(secret, FILE_LINKS))


def _signature(file_id: str, timestamp: str, nonce: str, secret: str) -> str:
    message = f"file-preview|{file_id}|{timestamp}|{nonce}".encode()
    digest = hmac.new(_key(secret), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


def sign_file(file_id: str, *, secret: str, now: float | None = None) -> Signed:
    """A fresh signature of `file_id` (a random nonce: no two links are alike)."""
    timestamp = str(int(time.time() if now is None else now))
    nonce = secrets.token_hex(16)
    return Signed(timestamp, nonce, _signature(file_id, timestamp, nonce, secret))


def verify_file(
    file_id: str, signed: Signed, *, secret: str, max_age: float, now: float | None = None
) -> None:
    """Return if `signed` was made for `file_id` by this secret less than `max_age` seconds
    ago; raise `SignatureError` (`ExpiredSignature` when only its age is wrong) otherwise."""
    expected = _signature(file_id, signed.timestamp, signed.nonce, secret)
    if not hmac.compare_digest(expected.encode(), signed.sign.encode()):
        raise SignatureError("the signature does not match")
    try:
        issued = int(signed.timestamp)
    except ValueError:  # only a signature made by this secret gets here, so never in practice
        raise SignatureError("the timestamp is not a number") from None
    if (time.time() if now is None else now) - issued > max_age:
        raise ExpiredSignature("the link has expired")
