"""Every console error path answers with the envelope and the right status."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from tests import support
from tests.e2e.conftest import Admin, AppFactory, create_admin, login, make_admin
from tests.support import Stack

SECRET = "test-secret-key-for-conduit-tests-0123456789"  # the stack's CONDUIT_AUTH_SECRET_KEY


assert_envelope = support.assert_envelope


class TestBadInput:
    def test_unknown_app_id_is_404(self, admin: Admin) -> None:
        for path in (f"/console/api/apps/{uuid.uuid4()}", "/console/api/apps/not-a-uuid"):
            assert_envelope(admin.client.get(path), 404, "app_not_found")

    def test_malformed_json_is_400(self, admin: Admin) -> None:
        response = admin.client.post(
            "/console/api/apps",
            content=b"{name: oops",
            headers={"Content-Type": "application/json"},
        )
        assert_envelope(response, 400, "invalid_param", "Invalid JSON payload")

    def test_empty_body_is_400(self, admin: Admin) -> None:
        response = admin.client.post(
            "/console/api/apps", headers={"Content-Type": "application/json"}
        )
        assert_envelope(response, 400, "invalid_param", "JSON payload is empty")

    def test_missing_field_is_named(self, admin: Admin) -> None:
        assert_envelope(
            admin.client.post("/console/api/apps", json={"name": "x"}), 400, "invalid_param", "mode"
        )

    def test_wrong_type_is_named(self, admin: Admin) -> None:
        response = admin.client.post("/console/api/apps", json={"name": 42, "mode": "chat"})
        assert_envelope(response, 400, "invalid_param", "name")

    def test_unknown_mode_lists_the_allowed_ones(self, admin: Admin) -> None:
        response = admin.client.post("/console/api/apps", json={"name": "x", "mode": "chatbot"})
        assert_envelope(response, 400, "invalid_param", "advanced-chat")

    def test_blank_name_is_rejected(self, admin: Admin, make_app: AppFactory) -> None:
        app_id = make_app()["id"]
        assert_envelope(
            admin.client.patch(f"/console/api/apps/{app_id}/name", json={"name": "  "}),
            400,
            "invalid_param",
            "name",
        )

    def test_bad_paging_values_are_named(self, admin: Admin) -> None:
        assert_envelope(
            admin.client.get("/console/api/apps", params={"limit": "500"}),
            400,
            "invalid_param",
            "limit",
        )
        assert_envelope(
            admin.client.get("/console/api/apps", params={"page": "x"}),
            400,
            "invalid_param",
            "page",
        )
        assert_envelope(
            admin.client.get("/console/api/apps", params={"mode": "x"}),
            400,
            "invalid_param",
            "mode",
        )

    def test_bad_input_writes_nothing(self, admin: Admin) -> None:
        admin.client.post("/console/api/apps", json={"name": 42, "mode": "chat"})
        admin.client.post("/console/api/apps", json={"name": "ok", "mode": "nope"})
        assert admin.client.get("/console/api/apps").json()["total"] == 0

    def test_unknown_route_and_wrong_method(self, admin: Admin) -> None:
        assert_envelope(admin.client.get("/console/api/nowhere"), 404, "not_found")
        assert_envelope(admin.client.patch("/console/api/apps"), 405, "method_not_allowed")


class TestTokens:
    def test_missing_token_is_401_with_the_bearer_challenge(self, stack: Stack) -> None:
        with stack.client() as anonymous:
            response = anonymous.get("/console/api/apps")
        assert_envelope(response, 401, "unauthorized", "Bearer")
        assert response.headers["www-authenticate"] == 'Bearer realm="api"'

    def test_wrong_scheme_is_401(self, stack: Stack) -> None:
        with stack.client() as anonymous:
            response = anonymous.get("/console/api/apps", headers={"Authorization": "Basic abc"})
        assert_envelope(response, 401, "unauthorized", "scheme")

    def test_malformed_token_is_401(self, stack: Stack) -> None:
        with stack.client("not.a.jwt") as client:
            assert_envelope(client.get("/console/api/apps"), 401, "unauthorized", "invalid")

    def test_token_signed_with_another_key_is_401(self, stack: Stack, admin: Admin) -> None:
        claims = jwt.decode(admin.token, options={"verify_signature": False})
        forged = jwt.encode(claims, "another-key-entirely-0123456789abcdef", algorithm="HS256")
        with stack.client(forged) as client:
            assert_envelope(client.get("/console/api/apps"), 401, "unauthorized", "invalid")

    def test_expired_token_is_401(self, stack: Stack, admin: Admin) -> None:
        claims = jwt.decode(admin.token, options={"verify_signature": False})
        claims["exp"] = int(time.time()) - 10
        expired = jwt.encode(claims, SECRET, algorithm="HS256")
        with stack.client(expired) as client:
            assert_envelope(client.get("/console/api/apps"), 401, "unauthorized", "expired")

    def test_wrong_password_is_401(self, stack: Stack, admin: Admin) -> None:
        with stack.client() as anonymous:
            response = anonymous.post(
                "/console/api/login", json={"email": admin.email, "password": "wrong password"}
            )
        assert_envelope(response, 401, "unauthorized", "Invalid email or password")

    def test_refresh_rotates_and_logout_ends_the_session(self, stack: Stack, admin: Admin) -> None:
        with stack.client() as anonymous:
            refreshed = anonymous.post(
                "/console/api/refresh-token", json={"refresh_token": admin.refresh_token}
            )
            assert refreshed.status_code == 200, refreshed.text
            tokens = refreshed.json()["data"]
            stale = anonymous.post(
                "/console/api/refresh-token", json={"refresh_token": admin.refresh_token}
            )
            assert_envelope(stale, 401, "unauthorized", "refresh token")
        with stack.client(tokens["access_token"]) as client:
            assert client.get("/console/api/apps").status_code == 200
            assert client.post("/console/api/logout").json() == {"result": "success"}
            assert_envelope(client.get("/console/api/apps"), 401, "unauthorized", "log in again")


class TestRoles:
    @pytest.fixture
    def member(self, stack: Stack, admin: Admin) -> Admin:
        """A `normal` member of the admin's workspace (their own workspace stays secondary)."""
        email, password = create_admin(stack, workspace="Elsewhere")
        added = admin.client.post(
            "/console/api/workspaces/current/members", json={"email": email, "role": "normal"}
        )
        assert added.status_code == 201, added.text
        member = login(stack, email, password)
        workspace_id = admin.client.get("/console/api/workspaces/current").json()["data"]["id"]
        assert (
            member.client.post(
                "/console/api/workspaces/switch", json={"tenant_id": workspace_id}
            ).status_code
            == 200
        )
        return member

    def test_normal_member_can_read_but_not_change(
        self, admin: Admin, member: Admin, make_app: AppFactory
    ) -> None:
        app_id = make_app()["id"]
        assert member.client.get(f"/console/api/apps/{app_id}").status_code == 200
        assert_envelope(
            member.client.delete(f"/console/api/apps/{app_id}"), 403, "forbidden", "normal"
        )
        assert_envelope(
            member.client.post(f"/console/api/apps/{app_id}/api-keys"), 403, "forbidden"
        )
        assert_envelope(
            member.client.post("/console/api/apps", json={"name": "x", "mode": "chat"}),
            403,
            "forbidden",
        )
        assert_envelope(member.client.post("/console/api/datasets/api-keys"), 403, "forbidden")
        assert admin.client.get(f"/console/api/apps/{app_id}").status_code == 200

    def test_editor_can_change_apps_but_not_members(
        self, stack: Stack, admin: Admin, member: Admin, make_app: AppFactory
    ) -> None:
        member_id = next(
            m["id"]
            for m in admin.client.get("/console/api/workspaces/current/members").json()["data"]
            if m["email"] == member.email
        )
        promoted = admin.client.put(
            f"/console/api/workspaces/current/members/{member_id}/update-role",
            json={"role": "editor"},
        )
        assert promoted.status_code == 200 and promoted.json()["data"]["role"] == "editor"
        app_id = make_app(member.client)["id"]
        assert member.client.delete(f"/console/api/apps/{app_id}").status_code == 204
        response = member.client.post(
            "/console/api/workspaces/current/members", json={"email": admin.email, "role": "admin"}
        )
        assert_envelope(response, 403, "forbidden")

    def test_members_can_be_added_changed_and_removed(self, admin: Admin, member: Admin) -> None:
        members = admin.client.get("/console/api/workspaces/current/members").json()
        assert sorted(m["role"] for m in members["data"]) == ["normal", "owner"]
        member_id = next(m["id"] for m in members["data"] if m["role"] == "normal")
        again = admin.client.post(
            "/console/api/workspaces/current/members",
            json={"email": member.email, "role": "editor"},
        )
        assert_envelope(again, 409, "account_already_in_workspace")
        assert_envelope(
            admin.client.put(
                f"/console/api/workspaces/current/members/{member_id}/update-role",
                json={"role": "boss"},
            ),
            400,
            "invalid_param",
            "role",
        )
        assert (
            admin.client.delete(f"/console/api/workspaces/current/members/{member_id}").status_code
            == 204
        )
        assert len(admin.client.get("/console/api/workspaces/current/members").json()["data"]) == 1
        assert_envelope(
            admin.client.delete(f"/console/api/workspaces/current/members/{member_id}"),
            404,
            "member_not_found",
        )
        unknown = admin.client.post(
            "/console/api/workspaces/current/members",
            json={"email": "nobody@example.com", "role": "normal"},
        )
        assert_envelope(unknown, 404, "account_not_found")


class TestTenantIsolation:
    def test_another_workspaces_app_is_404_on_every_route(
        self, stack: Stack, admin: Admin, make_app: AppFactory
    ) -> None:
        app_id = make_app()["id"]
        key = admin.client.post(f"/console/api/apps/{app_id}/api-keys").json()["data"]
        stranger = make_admin(stack, workspace="Other Corp")
        with stranger.client as client:
            calls = [
                client.get(f"/console/api/apps/{app_id}"),
                client.put(f"/console/api/apps/{app_id}", json={"name": "mine"}),
                client.patch(f"/console/api/apps/{app_id}/name", json={"name": "mine"}),
                client.post(f"/console/api/apps/{app_id}/copy"),
                client.delete(f"/console/api/apps/{app_id}"),
                client.get(f"/console/api/apps/{app_id}/api-keys"),
                client.post(f"/console/api/apps/{app_id}/api-keys"),
                client.delete(f"/console/api/apps/{app_id}/api-keys/{key['id']}"),
            ]
            for response in calls:
                assert_envelope(response, 404, "app_not_found")
            assert client.get("/console/api/apps").json()["total"] == 0
            dataset_key = admin.client.post("/console/api/datasets/api-keys").json()["data"]
            assert_envelope(
                client.delete(f"/console/api/datasets/api-keys/{dataset_key['id']}"),
                404,
                "api_key_not_found",
            )
            assert client.get("/console/api/datasets/api-keys").json()["data"] == []
        assert (
            admin.client.get(f"/console/api/apps/{app_id}").json()["data"]["name"] == "Support bot"
        )
