"""App and dataset API keys: shown once, listed by prefix, capped, deletable."""

from __future__ import annotations

import re

from tests.e2e.conftest import Admin, AppFactory

APP_TOKEN = re.compile(r"^app-[A-Za-z0-9]{24}$")
DATASET_TOKEN = re.compile(r"^dataset-[A-Za-z0-9]{24}$")


class TestAppKeys:
    def test_token_is_returned_once_and_listed_by_prefix(
        self, admin: Admin, make_app: AppFactory
    ) -> None:
        app_id = make_app()["id"]
        created = admin.client.post(f"/console/api/apps/{app_id}/api-keys")
        assert created.status_code == 201
        key = created.json()["data"]
        assert APP_TOKEN.match(key["token"]), key
        listed = admin.client.get(f"/console/api/apps/{app_id}/api-keys").json()["data"]
        assert [k["id"] for k in listed] == [key["id"]]
        assert listed[0]["token"] == key["token"][:12] + "…"
        assert key["token"] not in str(listed)

    def test_at_most_ten_keys_per_app(self, admin: Admin, make_app: AppFactory) -> None:
        app_id = make_app()["id"]
        for _ in range(10):
            assert admin.client.post(f"/console/api/apps/{app_id}/api-keys").status_code == 201
        refused = admin.client.post(f"/console/api/apps/{app_id}/api-keys")
        assert refused.status_code == 400
        assert refused.json()["code"] == "bad_request"
        assert len(admin.client.get(f"/console/api/apps/{app_id}/api-keys").json()["data"]) == 10

    def test_deleted_key_is_gone(self, admin: Admin, make_app: AppFactory) -> None:
        app_id = make_app()["id"]
        key = admin.client.post(f"/console/api/apps/{app_id}/api-keys").json()["data"]
        assert (
            admin.client.delete(f"/console/api/apps/{app_id}/api-keys/{key['id']}").status_code
            == 204
        )
        assert admin.client.get(f"/console/api/apps/{app_id}/api-keys").json()["data"] == []
        again = admin.client.delete(f"/console/api/apps/{app_id}/api-keys/{key['id']}")
        assert again.status_code == 404 and again.json()["code"] == "api_key_not_found"

    def test_keys_of_one_app_are_not_listed_under_another(
        self, admin: Admin, make_app: AppFactory
    ) -> None:
        first, second = make_app()["id"], make_app()["id"]
        key = admin.client.post(f"/console/api/apps/{first}/api-keys").json()["data"]
        assert admin.client.get(f"/console/api/apps/{second}/api-keys").json()["data"] == []
        assert (
            admin.client.delete(f"/console/api/apps/{second}/api-keys/{key['id']}").status_code
            == 404
        )


class TestDatasetKeys:
    def test_create_list_delete(self, admin: Admin) -> None:
        created = admin.client.post("/console/api/datasets/api-keys")
        assert created.status_code == 201
        key = created.json()["data"]
        assert DATASET_TOKEN.match(key["token"])
        listed = admin.client.get("/console/api/datasets/api-keys").json()["data"]
        assert [k["token"] for k in listed] == [key["token"][:16] + "…"]
        assert admin.client.delete(f"/console/api/datasets/api-keys/{key['id']}").status_code == 204
        assert admin.client.get("/console/api/datasets/api-keys").json()["data"] == []
