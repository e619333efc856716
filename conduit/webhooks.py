"""Signing and verifying Conduit's callbacks: what the server sends, and what a receiver checks.

Standard library only, so a receiver can `from conduit.webhooks import verify` without the
server's dependencies (or copy this file).

A secret looks like `whsec_` + base64 of 24–32 random bytes (the Standard Webhooks format).
**The HMAC key of both schemes is the base64-decoded part after `whsec_`**, never the text of
the secret itself. Every callback carries two signatures of the same raw body:

- `X-Dify-Signature-V1`: hex HMAC-SHA256 of the raw body. It signs the body alone: no time,
  no id.
- Standard Webhooks: `webhook-id` (the delivery's event id, the same on every attempt),
  `webhook-timestamp` (unix seconds of this attempt) and `webhook-signature` =
  `v1,` + base64 HMAC-SHA256 of `"{webhook-id}.{webhook-timestamp}.{body}"`. The time is signed,
  so a receiver can refuse a replayed request.

While a rotated secret's grace lasts, the server signs with both secrets: the two hex digests
are comma-separated in `X-Dify-Signature-V1` (the current secret's first) and the two `v1,…`
signatures space-separated in `webhook-signature`; a receiver holding either secret verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

SECRET_PREFIX = "whsec_"  # noqa: S105 — the format's prefix, not a secret
DIFY_SIGNATURE = "X-Dify-Signature-V1"
WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"
DEFAULT_TOLERANCE = 300

Scheme = Literal["any", "standard", "dify"]


class WebhookVerificationError(Exception):
    """The request is not a genuine, fresh callback; the message says which check failed."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_…` secret: its base64 part, decoded."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("the secret is not whsec_ + base64") from None
    if not key:
        raise WebhookVerificationError("the secret is empty")
    return key


def dify_signature(secret: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of the raw body (`X-Dify-Signature-V1` for one secret)."""
    return hmac.new(secret_key(secret), body, hashlib.sha256).hexdigest()


def standard_signature(secret: str, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """`v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` (one `webhook-signature` entry)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign(
    secrets: str | Sequence[str], *, msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The headers of one attempt, signed with every secret given (the current one first)."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    if not keys:
        raise ValueError("sign() needs at least one secret")
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        DIFY_SIGNATURE: ",".join(dify_signature(key, body) for key in keys),
        WEBHOOK_ID: msg_id,
        WEBHOOK_TIMESTAMP: str(stamp),
        WEBHOOK_SIGNATURE: " ".join(standard_signature(key, msg_id, stamp, body) for key in keys),
    }


def verify(
    secret: str | Iterable[str],
    headers: Mapping[str, str],
    body: bytes | str,
    tolerance: int = DEFAULT_TOLERANCE,
    *,
    scheme: Scheme = "any",
    now: float | None = None,
) -> Any:
    """Check a callback and return its parsed JSON body; raise `WebhookVerificationError`.

    With `webhook-signature` present (or `scheme="standard"`), the Standard Webhooks scheme is
    checked: `webhook-id` and `webhook-timestamp` must be present, the timestamp within
    `tolerance` seconds of now (stale or in the future: refused), and one signature must match.

    Otherwise (or `scheme="dify"`) `X-Dify-Signature-V1` is checked. That signature covers the
    body only, so it proves who sent the body, not when: a captured request replayed later
    still matches. `webhook-timestamp` is then required and checked against `tolerance`, but
    an attacker can change it unnoticed; the body's `task_id` is what to dedupe on. Receivers
    that want replay protection pass `scheme="standard"`, which also refuses a request whose
    Standard Webhooks headers were stripped to fall back on the weaker scheme.
    """
    keys = [secret] if isinstance(secret, str) else list(secret)
    if not keys:
        raise WebhookVerificationError("no secret to verify with")
    raw = body.encode() if isinstance(body, str) else bytes(body)
    found = {name.lower(): value for name, value in headers.items()}
    use_standard = scheme == "standard" or (scheme == "any" and WEBHOOK_SIGNATURE in found)
    timestamp = _fresh_timestamp(found, tolerance, time.time() if now is None else now)
    if use_standard:
        _verify_standard(keys, found, timestamp, raw)
    else:
        _verify_dify(keys, found, raw)
    try:
        return json.loads(raw)
    except ValueError:
        raise WebhookVerificationError("the body is not JSON") from None


def _fresh_timestamp(headers: Mapping[str, str], tolerance: int, now: float) -> str:
    stamp = headers.get(WEBHOOK_TIMESTAMP)
    if not stamp:
        raise WebhookVerificationError(f"missing {WEBHOOK_TIMESTAMP} header")
    try:
        seconds = int(stamp)
    except ValueError:
        raise WebhookVerificationError(f"{WEBHOOK_TIMESTAMP} is not unix seconds") from None
    if seconds < now - tolerance:
        raise WebhookVerificationError(f"{WEBHOOK_TIMESTAMP} is too old (replay?)")
    if seconds > now + tolerance:
        raise WebhookVerificationError(f"{WEBHOOK_TIMESTAMP} is in the future")
    return stamp


def _verify_standard(
    keys: Sequence[str], headers: Mapping[str, str], timestamp: str, body: bytes
) -> None:
    msg_id = headers.get(WEBHOOK_ID)
    if not msg_id:
        raise WebhookVerificationError(f"missing {WEBHOOK_ID} header")
    given = headers.get(WEBHOOK_SIGNATURE)
    if not given:
        raise WebhookVerificationError(f"missing {WEBHOOK_SIGNATURE} header")
    offered = [part for part in given.split(" ") if part.startswith("v1,")]
    for key in keys:
        expected = standard_signature(key, msg_id, timestamp, body)
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return
    raise WebhookVerificationError(f"no {WEBHOOK_SIGNATURE} matches")


def _verify_dify(keys: Sequence[str], headers: Mapping[str, str], body: bytes) -> None:
    given = headers.get(DIFY_SIGNATURE.lower())
    if not given:
        raise WebhookVerificationError(f"missing {DIFY_SIGNATURE} header")
    offered = [part.strip() for part in given.split(",")]
    for key in keys:
        expected = dify_signature(key, body)
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return
    raise WebhookVerificationError(f"no {DIFY_SIGNATURE} matches")


def generate_secret(size: int = 32) -> str:
    """A new secret: `whsec_` + base64 of `size` random bytes (24 to 32)."""
    if not 24 <= size <= 32:
        raise ValueError("a webhook secret has 24 to 32 random bytes")
    return SECRET_PREFIX + base64.b64encode(os.urandom(size)).decode("ascii")
