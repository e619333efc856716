"""Dataset tags through the Knowledge API: create, list with binding counts, rename, delete,
bind to and unbind from datasets, a dataset's tags, the dataset list filtered by tag; scoping
between workspaces and Dify's errors."""

from __future__ import annotations

import httpx

from tests import support
from tests.e2e.conftest import Admin, make_admin
from tests.e2e.test_datasets import create, kb, knowledge_client

__all__ = ["kb"]  # the fixture

assert_envelope = support.assert_envelope


def tag(kb: httpx.Client, name: str) -> dict[str, str]:
    made = kb.post("/v1/datasets/tags", json={"name": name})
    assert made.status_code == 200, made.text
    return dict(made.json())


class TestTags:
    def test_tag_bind_filter_unbind_delete(self, kb: httpx.Client) -> None:
        hr = tag(kb, "HR")
        assert (hr["name"], hr["type"], hr["binding_count"]) == ("HR", "knowledge", "0")
        legal = tag(kb, "Legal")
        handbook = create(kb, name="Tagged handbook")
        contracts = create(kb, name="Tagged contracts")

        for target, ids in ((handbook, [hr["id"], legal["id"]]), (contracts, [legal["id"]])):
            bound = kb.post(
                "/v1/datasets/tags/binding", json={"tag_ids": ids, "target_id": target["id"]}
            )
            assert bound.status_code == 204, bound.text
        # Binding again changes nothing.
        again = kb.post(
            "/v1/datasets/tags/binding", json={"tag_ids": [hr["id"]], "target_id": handbook["id"]}
        )
        assert again.status_code == 204
        listed = {t["name"]: t["binding_count"] for t in kb.get("/v1/datasets/tags").json()}
        assert listed == {"HR": "1", "Legal": "2"}

        own = kb.get(f"/v1/datasets/{handbook['id']}/tags").json()
        assert own["total"] == 2
        assert {t["name"] for t in own["data"]} == {"HR", "Legal"}
        read = kb.get(f"/v1/datasets/{handbook['id']}").json()
        assert {(t["name"], t["type"]) for t in read["tags"]} == {
            ("HR", "knowledge"),
            ("Legal", "knowledge"),
        }
        by_hr = kb.get("/v1/datasets", params={"tag_ids": hr["id"]}).json()
        assert [d["id"] for d in by_hr["data"]] == [handbook["id"]]
        by_either = kb.get(
            "/v1/datasets", params=[("tag_ids", hr["id"]), ("tag_ids", legal["id"])]
        ).json()
        assert {d["id"] for d in by_either["data"]} == {handbook["id"], contracts["id"]}

        renamed = kb.patch("/v1/datasets/tags", json={"tag_id": hr["id"], "name": "People"})
        assert renamed.status_code == 200, renamed.text
        assert (renamed.json()["name"], renamed.json()["binding_count"]) == ("People", "1")

        off = kb.post(
            "/v1/datasets/tags/unbinding", json={"tag_id": legal["id"], "target_id": handbook["id"]}
        )
        assert off.status_code == 204, off.text
        assert [
            t["name"] for t in kb.get(f"/v1/datasets/{handbook['id']}/tags").json()["data"]
        ] == ["People"]
        gone = kb.request("DELETE", "/v1/datasets/tags", json={"tag_id": hr["id"]})
        assert gone.status_code == 204, gone.text
        assert kb.get(f"/v1/datasets/{handbook['id']}").json()["tags"] == []
        assert [t["name"] for t in kb.get("/v1/datasets/tags").json()] == ["Legal"]
        # A deleted dataset takes its bindings along.
        assert kb.delete(f"/v1/datasets/{contracts['id']}").status_code == 204
        assert [t["binding_count"] for t in kb.get("/v1/datasets/tags").json()] == ["0"]

    def test_bad_input_and_other_workspaces(
        self, stack: support.Stack, admin: Admin, kb: httpx.Client
    ) -> None:
        for body, field in (({}, "name is required"), ({"name": "x" * 51}, "name must be 1 to 50")):
            assert_envelope(kb.post("/v1/datasets/tags", json=body), 400, "invalid_param", field)
        mine = tag(kb, "Mine")
        assert_envelope(
            kb.post("/v1/datasets/tags", json={"name": "Mine"}),
            400,
            "invalid_param",
            "already exists",
        )
        dataset = create(kb, name="Scoped tags")
        assert_envelope(
            kb.post("/v1/datasets/tags/binding", json={"tag_ids": [mine["id"]]}),
            400,
            "invalid_param",
            "target_id is required",
        )
        assert_envelope(
            kb.post("/v1/datasets/tags/binding", json={"target_id": dataset["id"]}),
            400,
            "invalid_param",
            "tag_ids is required",
        )
        stranger = make_admin(stack, workspace="Tag strangers")
        with knowledge_client(stack, stranger) as theirs:
            their_tag = tag(theirs, "Theirs")
            their_dataset = create(theirs, name="Their dataset")
            # Their tag on my dataset, my tag on theirs, their names in my list: none of it.
            assert_envelope(
                kb.post(
                    "/v1/datasets/tags/binding",
                    json={"tag_ids": [their_tag["id"]], "target_id": dataset["id"]},
                ),
                404,
                "not_found",
                "Tag not found.",
            )
            assert_envelope(
                kb.post(
                    "/v1/datasets/tags/binding",
                    json={"tag_ids": [mine["id"]], "target_id": their_dataset["id"]},
                ),
                404,
                "not_found",
                "Dataset not found.",
            )
            assert [t["name"] for t in theirs.get("/v1/datasets/tags").json()] == ["Theirs"]
            assert_envelope(
                theirs.patch("/v1/datasets/tags", json={"tag_id": mine["id"], "name": "Stolen"}),
                404,
                "not_found",
            )
        stranger.client.close()
        assert [t["name"] for t in kb.get("/v1/datasets/tags").json()] == ["Mine"]
        assert kb.get(f"/v1/datasets/{dataset['id']}/tags").json() == {"data": [], "total": 0}
