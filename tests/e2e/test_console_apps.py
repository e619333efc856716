"""The console's app routes over real HTTP: the happy path, pagination, filters, caching."""

from __future__ import annotations

from tests.e2e.conftest import Admin, AppFactory
from tests.support import Stack, wait_for


class TestAppLifecycle:
    def test_create_list_update_copy_rename_delete(
        self, admin: Admin, make_app: AppFactory
    ) -> None:
        client = admin.client
        created = make_app(name="Helpdesk", mode="chat", description="answers tickets")
        assert created["mode"] == "chat"
        assert created["enable_api"] is True
        app_id = created["id"]

        listed = client.get("/console/api/apps").json()
        assert [a["id"] for a in listed["data"]] == [app_id]
        assert (listed["total"], listed["page"], listed["limit"], listed["has_more"]) == (
            1,
            1,
            20,
            False,
        )

        updated = client.put(
            f"/console/api/apps/{app_id}", json={"name": "Helpdesk v2", "icon": "🛟"}
        )
        assert updated.status_code == 200, updated.text
        assert updated.json()["data"]["name"] == "Helpdesk v2"
        assert client.get(f"/console/api/apps/{app_id}").json()["data"]["icon"] == "🛟"

        copied = client.post(f"/console/api/apps/{app_id}/copy", json={"name": "Helpdesk copy"})
        assert copied.status_code == 201, copied.text
        copy = copied.json()["data"]
        assert copy["id"] != app_id
        assert (copy["name"], copy["mode"], copy["description"]) == (
            "Helpdesk copy",
            "chat",
            "answers tickets",
        )

        renamed = client.patch(f"/console/api/apps/{copy['id']}/name", json={"name": "Renamed"})
        assert renamed.status_code == 200
        assert client.get(f"/console/api/apps/{copy['id']}").json()["data"]["name"] == "Renamed"

        assert client.delete(f"/console/api/apps/{app_id}").status_code == 204
        missing = client.get(f"/console/api/apps/{app_id}")
        assert missing.status_code == 404
        assert missing.json() == {
            "code": "app_not_found",
            "message": "App not found.",
            "status": 404,
        }
        assert [a["id"] for a in client.get("/console/api/apps").json()["data"]] == [copy["id"]]

    def test_copy_without_a_body_names_the_copy_after_the_source(
        self, admin: Admin, make_app: AppFactory
    ) -> None:
        source = make_app(name="Writer", mode="completion")
        copied = admin.client.post(f"/console/api/apps/{source['id']}/copy")
        assert copied.status_code == 201
        assert copied.json()["data"]["name"] == "Writer (copy)"

    def test_pages_partition_the_list_newest_first(
        self, admin: Admin, make_app: AppFactory
    ) -> None:
        ids = [make_app(name=f"app {i}")["id"] for i in range(5)]
        seen: list[str] = []
        for page in (1, 2, 3):
            body = admin.client.get("/console/api/apps", params={"page": page, "limit": 2}).json()
            assert body["total"] == 5
            assert body["has_more"] is (page < 3)
            seen += [a["id"] for a in body["data"]]
        assert seen == list(reversed(ids))

    def test_filters_by_mode_and_name(self, admin: Admin, make_app: AppFactory) -> None:
        make_app(name="Chat one", mode="chat")
        make_app(name="Writer", mode="completion")
        make_app(name="Flow", mode="workflow")
        by_mode = admin.client.get("/console/api/apps", params={"mode": "completion"}).json()
        assert [a["name"] for a in by_mode["data"]] == ["Writer"]
        by_name = admin.client.get("/console/api/apps", params={"name": "one"}).json()
        assert [a["name"] for a in by_name["data"]] == ["Chat one"]
        everything = admin.client.get(
            "/console/api/apps", params={"mode": "all", "name": "", "page": ""}
        ).json()
        assert everything["total"] == 3

    def test_a_new_app_gets_its_site_and_installed_app_records(
        self, stack: Stack, make_app: AppFactory
    ) -> None:
        app_id = make_app()["id"]
        wait_for(
            lambda: stack.sql("SELECT count(*) FROM sites WHERE app_id = :a", a=app_id) == [(1,)],
            what="site",
        )
        wait_for(
            lambda: (
                stack.sql("SELECT count(*) FROM installed_apps WHERE app_id = :a", a=app_id)
                == [(1,)]
            ),
            what="installed app",
        )
        wait_for(
            lambda: (
                stack.sql(
                    "SELECT status, run_count FROM outbox WHERE task = 'conduit.ops.provision_app' "
                    "AND CAST(kwargs AS TEXT) LIKE :pattern",
                    pattern=f"%{app_id}%",
                )
                == [("succeeded", 1)]
            ),
            what="the provision task",
        )


class TestReadAfterWrite:
    def test_a_read_after_put_never_returns_the_old_name(
        self, admin: Admin, make_app: AppFactory
    ) -> None:
        app_id = make_app(name="name 0")["id"]
        for i in range(1, 15):
            assert (
                admin.client.get(f"/console/api/apps/{app_id}").json()["data"]["name"]
                == f"name {i - 1}"
            )
            response = admin.client.put(f"/console/api/apps/{app_id}", json={"name": f"name {i}"})
            assert response.status_code == 200
            assert (
                admin.client.get(f"/console/api/apps/{app_id}").json()["data"]["name"]
                == f"name {i}"
            )
