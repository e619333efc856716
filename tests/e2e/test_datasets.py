"""The Knowledge API's datasets (`/v1/datasets`) over HTTP, with dataset keys made in the
console as a user makes them: create, list, read, update, delete, scoping between workspaces,
and Dify's errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import support
from tests.e2e.conftest import Admin, AppFactory, add_member, make_admin

LOCAL_MODEL = "all-MiniLM-L6-v2-onnx-int8"


assert_envelope = support.assert_envelope


def knowledge_client(stack: support.Stack, admin: Admin) -> httpx.Client:
    created = admin.client.post("/console/api/datasets/api-keys")
    assert created.status_code == 201, created.text
    return stack.client(created.json()["data"]["token"])


@pytest.fixture
def kb(stack: support.Stack, admin: Admin) -> Iterator[httpx.Client]:
    with knowledge_client(stack, admin) as client:
        yield client


def create(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/datasets", json={"name": "Handbook", **body})
    assert response.status_code == 200, response.text
    return dict(response.json())


class TestCrud:
    def test_create_read_update_delete(self, kb: httpx.Client, admin: Admin) -> None:
        made = create(kb, name="  Employee handbook ", description="HR policies")
        assert made["name"] == "Employee handbook"
        assert made["description"] == "HR policies"
        assert made["permission"] == "only_me"
        assert made["provider"] == "vendor"
        assert made["indexing_technique"] is None
        assert (made["document_count"], made["word_count"], made["app_count"]) == (0, 0, 0)
        assert made["retrieval_model_dict"]["search_method"] == "semantic_search"
        assert made["enable_api"] is True
        assert made["author_name"]
        assert isinstance(made["created_at"], int)
        for key in (
            "tags",
            "doc_metadata",
            "external_knowledge_info",
            "total_documents",
            "total_available_documents",
            "embedding_available",
            "doc_form",
        ):
            assert key in made

        read = kb.get(f"/v1/datasets/{made['id']}")
        assert read.status_code == 200
        assert read.json() == made

        patched = kb.patch(
            f"/v1/datasets/{made['id']}",
            json={
                "name": "Handbook 2027",
                "indexing_technique": "high_quality",
                "embedding_model": LOCAL_MODEL,
                "embedding_model_provider": "conduit",
                "permission": "all_team_members",
                "retrieval_model": {
                    "search_method": "hybrid_search",
                    "top_k": 5,
                    "score_threshold_enabled": True,
                    "score_threshold": 0.4,
                    "weights": {
                        "vector_setting": {"vector_weight": 0.7},
                        "keyword_setting": {"keyword_weight": 0.3},
                    },
                },
            },
        )
        assert patched.status_code == 200, patched.text
        body = patched.json()
        assert body["name"] == "Handbook 2027"
        assert body["description"] == "HR policies"  # untouched
        assert body["indexing_technique"] == "high_quality"
        assert body["embedding_model"] == LOCAL_MODEL
        assert body["permission"] == "all_team_members"
        model = body["retrieval_model_dict"]
        assert (model["search_method"], model["top_k"], model["score_threshold"]) == (
            "hybrid_search",
            5,
            0.4,
        )
        assert model["weights"]["vector_setting"]["vector_weight"] == 0.7
        assert model["reranking_mode"] == "weighted_score"
        assert body["updated_by"]

        deleted = kb.delete(f"/v1/datasets/{made['id']}")
        assert deleted.status_code == 204
        assert deleted.content == b""
        assert_envelope(
            kb.get(f"/v1/datasets/{made['id']}"), 404, "not_found", "Dataset not found."
        )

    def test_list_pages_and_keyword(self, stack: support.Stack) -> None:
        owner = make_admin(stack)
        with knowledge_client(stack, owner) as kb:
            for name in ("Alpha notes", "Beta notes", "Gamma manual"):
                create(kb, name=name)
            first = kb.get("/v1/datasets", params={"limit": 2})
            assert first.status_code == 200
            page = first.json()
            assert (page["total"], page["page"], page["limit"], page["has_more"]) == (3, 1, 2, True)
            assert [d["name"] for d in page["data"]] == ["Gamma manual", "Beta notes"]
            second = kb.get("/v1/datasets", params={"limit": 2, "page": 2}).json()
            assert [d["name"] for d in second["data"]] == ["Alpha notes"]
            assert second["has_more"] is False
            found = kb.get("/v1/datasets", params={"keyword": "NOTES"}).json()
            assert sorted(d["name"] for d in found["data"]) == ["Alpha notes", "Beta notes"]
            empty_values = kb.get("/v1/datasets", params={"keyword": "", "page": "", "limit": ""})
            assert empty_values.json()["total"] == 3  # empty query values count as absent
            tagged = kb.get("/v1/datasets", params={"tag_ids": "no-such-tag"}).json()
            assert tagged["data"] == [] and tagged["total"] == 0
        owner.client.close()

    def test_only_me_datasets_of_another_member_are_listed_only_with_include_all(
        self, stack: support.Stack
    ) -> None:
        owner = make_admin(stack)
        with knowledge_client(stack, owner) as kb:
            create(kb, name="Mine")
            theirs = create(kb, name="Theirs")
            shared = create(kb, name="Shared", permission="all_team_members")
            support.run_sql(
                stack.database_url,
                "UPDATE datasets SET created_by = :someone WHERE id IN (:a, :b)",
                someone="00000000-0000-4000-8000-000000000001",
                a=theirs["id"],
                b=shared["id"],
            )
            listed = {d["name"] for d in kb.get("/v1/datasets").json()["data"]}
            assert listed == {"Mine", "Shared"}
            everything = kb.get("/v1/datasets", params={"include_all": "true"}).json()["data"]
            assert {d["name"] for d in everything} == {"Mine", "Theirs", "Shared"}
            assert_envelope(
                kb.get("/v1/datasets", params={"include_all": "maybe"}),
                400,
                "invalid_param",
                "include_all must be true or false",
            )
        owner.client.close()


class TestErrors:
    def test_a_duplicate_name_is_409_on_create_and_on_rename(self, kb: httpx.Client) -> None:
        create(kb, name="Twice")
        assert_envelope(
            kb.post("/v1/datasets", json={"name": "Twice"}),
            409,
            "dataset_name_duplicate",
            "The dataset name already exists.",
        )
        other = create(kb, name="Once")
        assert_envelope(
            kb.patch(f"/v1/datasets/{other['id']}", json={"name": "Twice"}),
            409,
            "dataset_name_duplicate",
        )
        assert kb.get(f"/v1/datasets/{other['id']}").json()["name"] == "Once"

    @pytest.mark.parametrize(
        ("body", "mentions"),
        [
            ({}, "name must be between 1 and 40 characters"),
            ({"name": "   "}, "name must be between 1 and 40"),
            ({"name": "x" * 41}, "name must be between 1 and 40"),
            ({"name": "n", "description": "d" * 401}, "description must be a string of at most"),
            ({"name": "n", "indexing_technique": "best"}, "indexing_technique must be one of"),
            ({"name": "n", "permission": "everyone"}, "permission must be one of"),
            ({"name": "n", "provider": "elsewhere"}, "provider must be one of: vendor, external"),
            ({"name": "n", "provider": "external"}, "external_knowledge_api_id is required"),
            (
                {
                    "name": "n",
                    "embedding_model": "text-embedding-3-small",
                    "embedding_model_provider": "openai",
                },
                "embedding_model 'text-embedding-3-small' of provider 'openai' is not available",
            ),
            ({"name": "n", "retrieval_model": []}, "retrieval_model must be an object"),
            (
                {"name": "n", "retrieval_model": {"search_method": "vibes"}},
                "retrieval_model.search_method must be one of",
            ),
            ({"name": "n", "retrieval_model": {"top_k": 0}}, "retrieval_model.top_k must be"),
            (
                {"name": "n", "retrieval_model": {"score_threshold": 1.5}},
                "retrieval_model.score_threshold must be a number from 0 to 1",
            ),
            (
                {
                    "name": "n",
                    "retrieval_model": {
                        "reranking_enable": True,
                        "reranking_model": {
                            "reranking_provider_name": "cohere",
                            "reranking_model_name": "rerank-v3",
                        },
                    },
                },
                "this workspace has no rerank model",
            ),
            (
                {"name": "n", "retrieval_model": {"weights": {"vector_setting": {}}}},
                "vector_weight must be a number from 0 to 1",
            ),
        ],
    )
    def test_bad_input_names_the_field_and_stores_nothing(
        self, stack: support.Stack, body: dict[str, Any], mentions: str
    ) -> None:
        owner = make_admin(stack)
        with knowledge_client(stack, owner) as kb:
            assert_envelope(kb.post("/v1/datasets", json=body), 400, "invalid_param", mentions)
            assert kb.get("/v1/datasets").json()["total"] == 0
        owner.client.close()

    def test_keys_of_the_other_scope_are_refused(
        self, stack: support.Stack, admin: Admin, kb: httpx.Client, make_app: AppFactory
    ) -> None:
        app_id = make_app()["id"]
        app_token = admin.client.post(f"/console/api/apps/{app_id}/api-keys").json()["data"]
        with stack.client(app_token["token"]) as app_client:
            assert_envelope(
                app_client.get("/v1/datasets"), 401, "unauthorized", "Access token is invalid"
            )
        assert_envelope(
            kb.post("/v1/chat-messages", json={"query": "hi", "user": "u", "inputs": {}}),
            401,
            "unauthorized",
            "Access token is invalid",
        )
        with stack.client() as anonymous:
            assert_envelope(anonymous.get("/v1/datasets"), 401, "unauthorized", "Bearer")
        with stack.client("dataset-notARealKey000000000000") as forged:
            assert_envelope(forged.get("/v1/datasets"), 401, "unauthorized")

    @pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("PATCH", ""), ("DELETE", "")])
    def test_another_workspaces_dataset_is_not_found(
        self, stack: support.Stack, kb: httpx.Client, method: str, suffix: str
    ) -> None:
        stranger = make_admin(stack, workspace="Elsewhere")
        with knowledge_client(stack, stranger) as theirs:
            foreign = create(theirs, name="Private")
        stranger.client.close()
        for dataset_id in (foreign["id"], "not-a-uuid", "00000000-0000-4000-8000-000000000000"):
            response = kb.request(
                method, f"/v1/datasets/{dataset_id}{suffix}", json={"name": "Hijacked"}
            )
            assert_envelope(response, 404, "not_found", "Dataset not found.")

    def test_a_dataset_an_app_uses_cannot_be_deleted(
        self, stack: support.Stack, admin: Admin, kb: httpx.Client, make_app: AppFactory
    ) -> None:
        made = create(kb, name="In use")
        app_id = make_app()["id"]
        config = admin.client.get(f"/console/api/apps/{app_id}/model-config").json()
        uses = {
            "retrieval_model": "multiple",
            "datasets": {"datasets": [{"dataset": {"enabled": True, "id": made["id"]}}]},
            "top_k": 4,
        }
        saved = admin.client.post(
            f"/console/api/apps/{app_id}/model-config",
            json={**config.get("data", config), "dataset_configs": uses},
        )
        assert saved.status_code == 200, saved.text
        assert kb.get(f"/v1/datasets/{made['id']}").json()["app_count"] == 1
        copied = admin.client.post(f"/console/api/apps/{app_id}/copy", json={})
        assert copied.status_code == 201, copied.text
        assert kb.get(f"/v1/datasets/{made['id']}").json()["app_count"] == 2
        assert_envelope(
            kb.delete(f"/v1/datasets/{made['id']}"),
            409,
            "dataset_in_use",
            "Please remove the dataset from the apps before deleting it.",
        )
        assert kb.get(f"/v1/datasets/{made['id']}").status_code == 200
        for user in (app_id, copied.json()["data"]["id"]):
            admin.client.delete(f"/console/api/apps/{user}")
        assert kb.get(f"/v1/datasets/{made['id']}").json()["app_count"] == 0
        assert kb.delete(f"/v1/datasets/{made['id']}").status_code == 204

    def test_an_app_cannot_use_another_workspaces_dataset(
        self, stack: support.Stack, admin: Admin, make_app: AppFactory
    ) -> None:
        stranger = make_admin(stack, workspace="Elsewhere")
        with knowledge_client(stack, stranger) as theirs:
            foreign = create(theirs, name="Theirs")
        stranger.client.close()
        app_id = make_app()["id"]
        refused = admin.client.post(
            f"/console/api/apps/{app_id}/model-config",
            json={
                "dataset_configs": {"datasets": {"datasets": [{"dataset": {"id": foreign["id"]}}]}}
            },
        )
        assert_envelope(
            refused,
            400,
            "invalid_param",
            f"dataset_configs.datasets.datasets[0].dataset.id: no dataset {foreign['id']}",
        )
        bad_k = admin.client.post(
            f"/console/api/apps/{app_id}/model-config",
            json={"dataset_configs": {"top_k": 99}},
        )
        assert_envelope(bad_k, 400, "invalid_param", "dataset_configs.top_k")

    def test_changing_the_index_of_a_dataset_with_documents_is_refused(
        self, stack: support.Stack, kb: httpx.Client
    ) -> None:
        made = create(kb, name="Indexed", indexing_technique="economy")
        tenant = support.run_sql(
            stack.database_url, "SELECT tenant_id FROM datasets WHERE id = :id", id=made["id"]
        )[0][0]
        support.run_sql(
            stack.database_url,
            "INSERT INTO documents (id, tenant_id, dataset_id, position, data_source_type, batch, "
            "name, created_from, created_by, created_at, updated_at, word_count, tokens, "
            "is_paused, indexing_status, enabled, archived, doc_form, total_segments, "
            "completed_segments, index_generation, lease_epoch, attempts, resumes) VALUES "
            "(:id, :tenant, :dataset, 1, 'upload_file', '20261204120000000001', 'a.txt', 'api', "
            ":tenant, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 120, 0, false, 'completed', true, "
            "false, 'text_model', 0, 0, 0, 0, 0, 0)",
            id="00000000-0000-4000-8000-0000000000bb",
            tenant=tenant,
            dataset=made["id"],
        )
        counted = kb.get(f"/v1/datasets/{made['id']}").json()
        assert (counted["document_count"], counted["word_count"]) == (1, 120)
        assert counted["total_available_documents"] == 1
        assert_envelope(
            kb.patch(f"/v1/datasets/{made['id']}", json={"indexing_technique": "high_quality"}),
            400,
            "invalid_param",
            "cannot change once the dataset has documents",
        )
        renamed = kb.patch(f"/v1/datasets/{made['id']}", json={"name": "Indexed, renamed"})
        assert renamed.status_code == 200


class TestConsole:
    def test_members_see_and_change_datasets_by_role_and_permission(
        self, stack: support.Stack, admin: Admin
    ) -> None:

        created = admin.client.post("/console/api/datasets", json={"name": "Private notes"})
        assert created.status_code == 201, created.text
        private = created.json()["data"]
        shared = admin.client.post(
            "/console/api/datasets", json={"name": "Team wiki", "permission": "all_team_members"}
        ).json()["data"]
        editor = add_member(stack, admin, "editor")
        normal = add_member(stack, admin, "normal")

        seen = {d["name"] for d in editor.client.get("/console/api/datasets").json()["data"]}
        assert seen == {"Team wiki"}
        assert_envelope(
            editor.client.get(f"/console/api/datasets/{private['id']}"),
            403,
            "forbidden",
            "You do not have permission to access this dataset.",
        )
        renamed = editor.client.patch(
            f"/console/api/datasets/{shared['id']}", json={"name": "Team wiki (edited)"}
        )
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["data"]["updated_by"] != private["created_by"]

        assert normal.client.get(f"/console/api/datasets/{shared['id']}").status_code == 200
        assert_envelope(
            normal.client.post("/console/api/datasets", json={"name": "Mine"}),
            403,
            "forbidden",
            "cannot create datasets",
        )
        assert_envelope(
            normal.client.delete(f"/console/api/datasets/{shared['id']}"),
            403,
            "forbidden",
            "cannot delete datasets",
        )
        everything = admin.client.get("/console/api/datasets", params={"include_all": "true"})
        assert everything.json()["total"] == 2
        not_for_editors = editor.client.get("/console/api/datasets", params={"include_all": "true"})
        assert not_for_editors.json()["total"] == 1

        assert admin.client.delete(f"/console/api/datasets/{private['id']}").status_code == 204
        assert_envelope(
            admin.client.get(f"/console/api/datasets/{private['id']}"),
            404,
            "not_found",
            "Dataset not found.",
        )
        for member in (editor, normal):
            member.client.close()

    def test_the_api_key_routes_are_not_taken_for_dataset_ids(self, admin: Admin) -> None:
        keys = admin.client.get("/console/api/datasets/api-keys")
        assert keys.status_code == 200
        assert "data" in keys.json()


class TestWorkspaceModels:
    def test_the_knowledge_key_lists_the_workspaces_models(
        self, stack: support.Stack, admin: Admin, kb: httpx.Client, make_app: AppFactory
    ) -> None:
        base = "/v1/workspaces/current/models/model-types"
        embedding = kb.get(f"{base}/text-embedding")
        assert embedding.status_code == 200, embedding.text
        ((provider,),) = [embedding.json()["data"]]
        assert provider["provider"] == "conduit"
        assert provider["status"] == "active"
        ((model,),) = [provider["models"]]
        assert model["model"] == LOCAL_MODEL
        assert model["model_type"] == "text-embedding"
        # What it lists is what a dataset accepts.
        made = create(
            kb, name="Listed model", indexing_technique="high_quality",
            embedding_model=model["model"], embedding_model_provider=provider["provider"],
        )  # fmt: skip
        assert made["embedding_model"] == LOCAL_MODEL

        added = admin.client.post(
            "/console/api/workspaces/current/model-providers",
            json={
                "provider": "openai_api_compatible",
                "name": "Team endpoint",
                "base_url": "https://models.example.com/v1",
                "api_key": "sk-team",
                "models": ["team-chat"],
            },
        )
        assert added.status_code == 201, added.text
        chat = kb.get(f"{base}/llm").json()["data"]
        assert [p["label"]["en_US"] for p in chat] == ["Server default", "Team endpoint"]
        assert chat[1]["provider"] == f"workspace:{added.json()['data']['id']}"
        assert [m["model"] for m in chat[1]["models"]] == ["team-chat"]
        assert "sk-team" not in kb.get(f"{base}/llm").text
        assert kb.get(f"{base}/rerank").json() == {"data": []}
        assert_envelope(kb.get(f"{base}/vision"), 400, "invalid_param", "model_type must be")

        app_id = make_app()["id"]
        app_key = admin.client.post(f"/console/api/apps/{app_id}/api-keys").json()["data"]
        with stack.client(app_key["token"]) as app_client:
            assert_envelope(app_client.get(f"{base}/llm"), 401, "unauthorized")
        stranger = make_admin(stack, workspace="Other models")
        with knowledge_client(stack, stranger) as theirs:
            assert [p["label"]["en_US"] for p in theirs.get(f"{base}/llm").json()["data"]] == [
                "Server default"
            ]
        stranger.client.close()
