"""Signed file links: HMAC-SHA256 over the file id, timestamp and nonce, with an expiry."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac

import pytest

from conduit.infra.signing import (
    ExpiredSignature,
    SignatureError,
    Signed,
    sign_file,
    verify_file,
)

SECRET = "test-secret-key-for-conduit-tests-0123456789"
FILE_ID = "6f1c2a0e-4a55-4c1e-9a43-0d7e4a8f5b21"
NOW = 1_750_000_000.0


def test_a_fresh_signature_verifies() -> None:
    signed = sign_file(FILE_ID, secret=SECRET, now=NOW)
    assert signed.timestamp == str(int(NOW))
    assert len(base64.urlsafe_b64decode(signed.sign)) == 32  # a whole SHA-256 digest
    verify_file(FILE_ID, signed, secret=SECRET, max_age=300, now=NOW + 300)


def test_each_link_has_its_own_nonce_and_signature() -> None:
    first, second = (sign_file(FILE_ID, secret=SECRET, now=NOW) for _ in range(2))
    assert first.nonce != second.nonce and first.sign != second.sign
    assert set(first.params()) == {"timestamp", "nonce", "sign"}


@pytest.mark.parametrize(
    "change",
    [
        {"timestamp": str(int(NOW) + 3600)},  # pushing the expiry back
        {"nonce": "0" * 32},
        {"sign": base64.urlsafe_b64encode(b"\0" * 32).decode()},
        {"sign": ""},
        {"sign": "not base64 at all ✗"},
    ],
    ids=["timestamp", "nonce", "sign", "empty-sign", "garbage-sign"],
)
def test_a_tampered_link_is_refused(change: dict[str, str]) -> None:
    tampered = dataclasses.replace(sign_file(FILE_ID, secret=SECRET, now=NOW), **change)
    with pytest.raises(SignatureError) as refused:
        verify_file(FILE_ID, tampered, secret=SECRET, max_age=300, now=NOW)
    assert not isinstance(refused.value, ExpiredSignature)


def test_a_link_for_another_file_is_refused() -> None:
    signed = sign_file(FILE_ID, secret=SECRET, now=NOW)
    with pytest.raises(SignatureError):
        verify_file(FILE_ID.replace("6f1c", "6f1d"), signed, secret=SECRET, max_age=300, now=NOW)


def test_another_secret_is_refused() -> None:
    signed = sign_file(FILE_ID, secret=SECRET, now=NOW)
    with pytest.raises(SignatureError):
        verify_file(FILE_ID, signed, secret="another-secret", max_age=300, now=NOW)


def test_an_expired_link_is_refused_as_expired() -> None:
    signed = sign_file(FILE_ID, secret=SECRET, now=NOW)
    with pytest.raises(ExpiredSignature):
        verify_file(FILE_ID, signed, secret=SECRET, max_age=300, now=NOW + 301)


def test_a_signature_is_not_the_plain_hmac_of_the_secret() -> None:
    """The key is derived for file links only: the server secret (which also signs console
    tokens) is never the HMAC key itself."""
    signed = sign_file(FILE_ID, secret=SECRET, now=NOW)
    message = f"file-preview|{FILE_ID}|{signed.timestamp}|{signed.nonce}".encode()
    plain = hmac.new(SECRET.encode(), message, hashlib.sha256).digest()
    assert base64.urlsafe_b64encode(plain).decode() != signed.sign
    verify_file(
        FILE_ID,
        Signed(signed.timestamp, signed.nonce, signed.sign),
        secret=SECRET,
        max_age=1,
        now=NOW,
    )
