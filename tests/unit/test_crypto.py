"""Secrets at rest: Fernet with a key derived from the server secret."""

from __future__ import annotations

import base64

import pytest

from conduit.infra import crypto
from conduit.infra.crypto import Cipher, DecryptionError, decrypt, derive_key, encrypt, mask

SECRET = "test-secret-key-for-conduit-tests-0123456789"


def test_round_trip() -> None:
    for plain in ("sk-0123456789abcdef", "", "ключ 🔑 with unicode", "x" * 5000):
        token = encrypt(plain, secret=SECRET)
        assert token != plain
        assert not plain or plain not in token
        assert decrypt(token, secret=SECRET) == plain


def test_each_encryption_differs_but_decrypts() -> None:
    first, second = encrypt("sk-same", secret=SECRET), encrypt("sk-same", secret=SECRET)
    assert first != second  # random IV
    assert decrypt(first, secret=SECRET) == decrypt(second, secret=SECRET) == "sk-same"


def test_wrong_secret_fails_clearly() -> None:
    token = encrypt("sk-0123456789abcdef", secret=SECRET)
    with pytest.raises(DecryptionError) as failure:
        decrypt(token, secret="another-secret")
    message = str(failure.value)
    assert "another server secret" in message
    assert "CONDUIT_AUTH_SECRET_KEY" in message
    assert "sk-" not in message


@pytest.mark.parametrize("damaged", ["", "not a token", "gAAAAA", "é"])
def test_damaged_value_fails_clearly(damaged: str) -> None:
    with pytest.raises(DecryptionError, match="cannot be decrypted"):
        decrypt(damaged, secret=SECRET)


def test_tampered_token_fails() -> None:
    token = encrypt("sk-0123456789abcdef", secret=SECRET)
    raw = bytearray(base64.urlsafe_b64decode(token))
    raw[-1] ^= 1
    with pytest.raises(DecryptionError):
        decrypt(base64.urlsafe_b64encode(bytes(raw)).decode(), secret=SECRET)


def test_key_derivation_is_stable_and_separates_purposes() -> None:
    key = derive_key(SECRET)
    assert key == derive_key(SECRET)
    assert len(base64.urlsafe_b64decode(key)) == 32
    assert derive_key(SECRET, "another purpose") != key
    assert derive_key("another-secret") != key
    token = Cipher(SECRET, "another purpose").encrypt("sk-x")
    with pytest.raises(DecryptionError):
        Cipher(SECRET).decrypt(token)


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="secret is empty"):
        derive_key("")


def test_cipher_is_cached_per_secret() -> None:
    assert crypto.cipher(SECRET) is crypto.cipher(SECRET)
    assert crypto.cipher(SECRET) is not crypto.cipher("another-secret")


@pytest.mark.parametrize(
    ("secret", "shown"),
    [
        ("sk-0123456789abcdef", "sk-…cdef"),
        ("0123456789ab", "…89ab"),
        ("sk-secret", "…et"),
        ("short", "…"),
        ("", None),
        (None, None),
    ],
)
def test_mask_never_shows_much(secret: str | None, shown: str | None) -> None:
    assert mask(secret) == shown
