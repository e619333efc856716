"""One email rule on every console route that takes an email (login, adding a member): the
special-use domains self-hosted installs use (.local, .test) pass, malformed addresses are a 400
naming the field. `conduit create-admin` and `quickstart` are covered in test_cli.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Admin, create_admin, login
from tests.e2e.test_console_errors import assert_envelope
from tests.support import Stack

# The rule's cases are in tests/unit/test_email_rule.py; here: each route uses it, and names
# the field whatever is wrong (shape, length, type).
INVALID: list[Any] = ["plain", "dotless@localhost", "", "x" * 250 + "@example.com", 42, None]


@pytest.mark.parametrize("domain", ["example.local", "example.test", "corp.internal"])
def test_special_use_domains_log_in(stack: Stack, domain: str) -> None:
    email = f"someone.{domain.split('.')[1]}@{domain}"
    created, password = create_admin(stack, email=email)
    member = login(stack, created, password)
    member.client.close()
    # The same rule trims and lower-cases, so the address as typed logs in too.
    with stack.client() as anonymous:
        response = anonymous.post(
            "/console/api/login", json={"email": f"  {email.upper()} ", "password": password}
        )
    assert response.status_code == 200, response.text


def test_a_member_on_a_special_use_domain_can_be_added(stack: Stack, admin: Admin) -> None:
    email, _ = create_admin(stack, workspace="Elsewhere", email="colleague@example.test")
    added = admin.client.post(
        "/console/api/workspaces/current/members", json={"email": email, "role": "editor"}
    )
    assert added.status_code == 201, added.text
    assert added.json()["data"]["email"] == "colleague@example.test"


@pytest.mark.parametrize("email", INVALID)
def test_a_malformed_email_at_login_is_400_naming_the_field(stack: Stack, email: Any) -> None:
    with stack.client() as anonymous:
        response = anonymous.post(
            "/console/api/login", json={"email": email, "password": "correct horse battery"}
        )
    assert_envelope(response, 400, "invalid_param", "email: ")


@pytest.mark.parametrize("email", INVALID)
def test_a_malformed_member_email_is_400_naming_the_field(admin: Admin, email: Any) -> None:
    response = admin.client.post(
        "/console/api/workspaces/current/members", json={"email": email, "role": "normal"}
    )
    assert_envelope(response, 400, "invalid_param", "email: ")
    members = admin.client.get("/console/api/workspaces/current/members").json()["data"]
    assert len(members) == 1  # the owner alone
