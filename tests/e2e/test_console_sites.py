"""Site settings over real HTTP: set from the console (`POST /console/api/apps/{id}/site`),
served by the Service API's `/v1/site`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.conftest import Admin, ServiceApp, add_member, make_admin, service_app
from tests.support import Stack, wait_for

SETTINGS: dict[str, Any] = {
    "title": "Tide desk",
    "icon_type": "emoji",
    "icon": "🌊",
    "icon_background": "#E0F2FE",
    "description": "Answers about the tides.",
    "default_language": "zh-Hans",
    "chat_color_theme": "#1C64F2",
    "chat_color_theme_inverted": True,
    "customize_domain": "https://tides.example.com",
    "copyright": "Harbour Ltd",
    "privacy_policy": "https://tides.example.com/privacy",
    "custom_disclaimer": "Tides are predictions, not promises.",
    "show_workflow_steps": False,
    "use_icon_as_answer_icon": True,
    "input_placeholder": "Ask about a harbour…",
}
SERVED = [name for name in SETTINGS if name != "customize_domain"]  # /v1/site leaves it out


def assert_envelope(response: httpx.Response, status: int, code: str, mentions: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["code"], body["status"]) == (code, status), body
    assert mentions in body["message"], body


@pytest.fixture
def app(stack: Stack, admin: Admin) -> Iterator[ServiceApp]:
    found = service_app(stack, admin)
    yield found
    found.client.close()


def served(app: ServiceApp) -> dict[str, Any]:
    """`GET /v1/site`, once the site record exists (it is made right after the app)."""
    response = wait_for(
        lambda: (r := app.client.get("/site")).status_code == 200 and r,
        timeout=15,
        what="the app's site",
    )
    return dict(response.json())


def site_path(app_id: str) -> str:
    return f"/console/api/apps/{app_id}/site"


class TestSiteSettings:
    def test_defaults_then_every_field_set_from_the_console_is_served(
        self, admin: Admin, app: ServiceApp
    ) -> None:
        before = served(app)
        assert set(SERVED) | {"icon_url"} <= set(before)
        assert (before["title"], before["default_language"]) == ("chat app", "en-US")
        assert (before["chat_color_theme"], before["chat_color_theme_inverted"]) == (None, False)
        assert (before["input_placeholder"], before["custom_disclaimer"]) == (None, "")
        assert (before["icon_url"], before["use_icon_as_answer_icon"]) == (None, False)

        response = admin.client.post(site_path(app.app_id), json=SETTINGS)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert {k: data[k] for k in SETTINGS} == SETTINGS
        assert data["app_id"] == app.app_id
        assert data["access_token"] == data["code"] and len(data["code"]) == 16

        after = served(app)
        assert {k: after[k] for k in SERVED} == {k: SETTINGS[k] for k in SERVED}
        assert after["icon_url"] is None  # an emoji icon: no file to link to

    def test_a_partial_update_keeps_the_other_fields(self, admin: Admin, app: ServiceApp) -> None:
        code = admin.client.post(site_path(app.app_id), json=SETTINGS).json()["data"]["code"]
        partial = {"title": "Renamed desk", "chat_color_theme_inverted": False, "copyright": ""}
        # Fields the route does not take (the code, Dify's unknown extras) are ignored.
        ignored = {"code": "hacked", "access_token": "hacked", "prompt_public": True}
        response = admin.client.post(site_path(app.app_id), json={**partial, **ignored})
        assert response.status_code == 200, response.text
        assert response.json()["data"]["code"] == code
        # null means "leave as is" (Dify's rule); "" clears a text.
        nulls = admin.client.post(site_path(app.app_id), json={"input_placeholder": None})
        assert nulls.status_code == 200, nulls.text
        assert {k: served(app)[k] for k in SERVED} == {
            **{k: SETTINGS[k] for k in SERVED},
            **partial,
        }

    def test_bad_values_are_400_naming_the_field_and_change_nothing(
        self, admin: Admin, app: ServiceApp
    ) -> None:
        before = served(app)
        for body, field in (
            ({"title": ""}, "title"),
            ({"title": "   "}, "title"),
            ({"title": "x" * 256}, "title"),
            ({"title": 5}, "title"),
            ({"icon_type": "svg"}, "icon_type"),
            ({"icon": "x" * 256}, "icon"),
            ({"icon_background": "#" * 33}, "icon_background"),
            ({"default_language": "English please"}, "default_language"),
            ({"default_language": "e"}, "default_language"),
            ({"chat_color_theme": ["#fff"]}, "chat_color_theme"),
            ({"chat_color_theme_inverted": "maybe"}, "chat_color_theme_inverted"),
            ({"custom_disclaimer": "d" * 513}, "custom_disclaimer"),
            ({"input_placeholder": "p" * 256}, "input_placeholder"),
            ({"copyright": "c" * 256}, "copyright"),
            ({"privacy_policy": "p" * 256}, "privacy_policy"),
            ({"customize_domain": "d" * 256}, "customize_domain"),
            ({"show_workflow_steps": {"on": True}}, "show_workflow_steps"),
            ({"use_icon_as_answer_icon": "sometimes"}, "use_icon_as_answer_icon"),
            ({"description": "d" * 4001}, "description"),
            # A good field next to a bad one is not written either.
            ({"title": "Good", "default_language": "??"}, "default_language"),
        ):
            response = admin.client.post(site_path(app.app_id), json=body)
            assert_envelope(response, 400, "invalid_param", field)
        assert served(app) == before
        assert_envelope(
            admin.client.post(
                site_path(app.app_id),
                content=b"[1, 2]",
                headers={"Content-Type": "application/json"},
            ),
            400,
            "invalid_param",
        )

    def test_another_workspaces_app_is_404(self, stack: Stack, app: ServiceApp) -> None:
        before = served(app)
        with make_admin(stack, workspace="Other Corp").client as other:
            for path in (site_path(app.app_id), f"{site_path(app.app_id)}/access-token-reset"):
                assert_envelope(other.post(path, json={"title": "Mine"}), 404, "app_not_found")
            assert_envelope(
                other.post(site_path("00000000-0000-0000-0000-000000000000"), json={}),
                404,
                "app_not_found",
            )
        assert served(app) == before

    def test_editors_edit_normal_members_cannot_and_admins_reset_the_token(
        self, stack: Stack, admin: Admin, app: ServiceApp
    ) -> None:
        normal = add_member(stack, admin, "normal")
        editor = add_member(stack, admin, "editor")
        try:
            path = site_path(app.app_id)
            assert_envelope(normal.client.post(path, json={"title": "No"}), 403, "forbidden")
            assert editor.client.post(path, json={"title": "Yes"}).status_code == 200
            assert served(app)["title"] == "Yes"

            code = admin.client.post(path, json={}).json()["data"]["code"]
            reset_path = f"{path}/access-token-reset"
            assert_envelope(editor.client.post(reset_path), 403, "forbidden")
            reset = admin.client.post(reset_path)
            assert reset.status_code == 200, reset.text
            new_code = reset.json()["data"]["code"]
            assert new_code != code and len(new_code) == 16
            assert reset.json()["data"]["title"] == "Yes"
        finally:
            normal.client.close()
            editor.client.close()


class TestSiteRead:
    """`GET /console/api/apps/{id}/site`: what the console's site page shows (its code)."""

    def test_members_read_the_site_with_its_code_and_others_get_404(
        self, stack: Stack, admin: Admin, app: ServiceApp
    ) -> None:
        path = site_path(app.app_id)
        read = admin.client.get(path)
        assert read.status_code == 200, read.text
        site = read.json()["data"]
        assert (site["app_id"], site["title"]) == (app.app_id, "chat app")
        assert len(site["code"]) == 16 and site["access_token"] == site["code"]

        admin.client.post(path, json={"title": "Harbour", "copyright": "Harbour Ltd"})
        reset = admin.client.post(f"{path}/access-token-reset").json()["data"]["code"]
        normal = add_member(stack, admin, "normal")
        try:
            again = normal.client.get(path)  # reading needs no editor role
            assert again.status_code == 200, again.text
            data = again.json()["data"]
            assert (data["title"], data["copyright"], data["code"]) == (
                "Harbour",
                "Harbour Ltd",
                reset,
            )
        finally:
            normal.client.close()
        with make_admin(stack, workspace="Other Corp").client as other:
            assert_envelope(other.get(path), 404, "app_not_found")
            assert_envelope(
                other.get(site_path("00000000-0000-0000-0000-000000000000")), 404, "app_not_found"
            )


class TestImageIcon:
    """An image icon is an upload's id; Dify's `icon_url` is a signed link to it."""

    @staticmethod
    def uploaded_image(app: ServiceApp) -> tuple[str, bytes]:
        png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16  # bytes are served as they were sent
        response = app.client.post(
            "/files/upload", files={"file": ("logo.png", png, "image/png")}, data={"user": "ops"}
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"]), png

    def test_the_icon_url_is_a_signed_link_to_the_image(
        self, admin: Admin, app: ServiceApp
    ) -> None:
        file_id, png = self.uploaded_image(app)
        updated = admin.client.post(
            site_path(app.app_id), json={"icon_type": "image", "icon": file_id}
        )
        assert updated.status_code == 200, updated.text
        for icon_url in (updated.json()["data"]["icon_url"], served(app)["icon_url"]):
            assert urlsplit(icon_url).path == f"/v1/files/{file_id}/file-preview", icon_url
            fetched = httpx.get(icon_url)  # no key: the signature is the credential
            assert fetched.status_code == 200, fetched.text
            assert (fetched.content, fetched.headers["content-type"]) == (png, "image/png")

    def test_no_link_to_another_apps_file_or_an_unknown_id(
        self, stack: Stack, admin: Admin, app: ServiceApp
    ) -> None:
        other = service_app(stack, admin)
        try:
            foreign, _ = self.uploaded_image(other)
        finally:
            other.client.close()
        for icon in (foreign, "00000000-0000-0000-0000-000000000000", "not-an-id"):
            updated = admin.client.post(
                site_path(app.app_id), json={"icon_type": "image", "icon": icon}
            )
            assert updated.status_code == 200, updated.text
            assert updated.json()["data"]["icon_url"] is None
            assert served(app)["icon_url"] is None
