"""The one email rule (`services/accounts.py:check_email`): Dify's permissive shape, which lets
special-use domains through (pydantic's EmailStr refused quickstart's admin@conduit.local)."""

from __future__ import annotations

import pytest

from conduit.errors import InvalidParam
from conduit.services.accounts import MAX_EMAIL, check_email, create_account


@pytest.mark.parametrize(
    "email",
    [
        "admin@conduit.local",
        "someone@example.test",
        "ops@corp.internal",
        "first.last+tag@mail.example.co.uk",
        "o'neil_{x}!#$%&*=?^`|~/-@example.com",
        "user@my-host.example",
        "josé@exämple.de",
    ],
)
def test_accepted(email: str) -> None:
    assert check_email(email) == email.lower()


def test_trimmed_and_lower_cased() -> None:
    assert check_email("  Admin@Conduit.LOCAL\n") == "admin@conduit.local"


@pytest.mark.parametrize(
    "email",
    [
        "",
        "plain",
        "no-domain@",
        "@example.com",
        "two@@example.com",
        "a space@example.com",
        "dotless@localhost",
        "short-tld@example.c",
        "double-dot@example..com",
        "trailing-dot@example.com.",
        "angle<brackets>@example.com",
        "x" * (MAX_EMAIL - len("@example.com") + 1) + "@example.com",
    ],
)
def test_refused(email: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        check_email(email)


def test_the_service_refuses_before_writing_naming_the_field() -> None:
    # No session is needed: the address is checked before anything touches the database.
    with pytest.raises(InvalidParam, match=r"^email: must be an address like"):
        create_account(None, email="not-an-email", password="long enough password")  # type: ignore[arg-type]
