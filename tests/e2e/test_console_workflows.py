"""The console's workflow routes over real HTTP: a new workflow or chatflow app's draft,
syncing it (a checked graph, the hash that guards it, secrets masked), publishing versions,
the dataset joins a published knowledge-retrieval node makes, and what other app modes and
other workspaces get."""

from __future__ import annotations

import copy
import re
import time
from typing import Any

import httpx

from tests import support
from tests.e2e.conftest import Admin, AppFactory, make_admin
from tests.support import Stack, wait_for

assert_envelope = support.assert_envelope
SECRET = "sk-live-0123456789abcdef"
MASKED = "sk-…cdef"
VERSION = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{6})?$")


def base(app_id: str) -> str:
    return f"/console/api/apps/{app_id}/workflows"


def node(node_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": node_id, "type": "custom", "data": data, "position": {"x": 0, "y": 0}}


def edge(source: str, target: str, handle: str = "source") -> dict[str, Any]:
    return {
        "id": f"{source}-{handle}-{target}",
        "source": source,
        "sourceHandle": handle,
        "target": target,
        "targetHandle": "target",
        "type": "custom",
    }


def echo_graph(title: str = "End") -> dict[str, Any]:
    """start(text) → end(text)."""
    start = node(
        "start",
        {
            "type": "start",
            "title": "Start",
            "variables": [{"variable": "text", "label": "Text", "type": "text-input"}],
        },
    )
    end = node(
        "end",
        {
            "type": "end",
            "title": title,
            "outputs": [{"variable": "text", "value_selector": ["start", "text"]}],
        },
    )
    return {"nodes": [start, end], "edges": [edge("start", "end")]}


def knowledge_graph(dataset_ids: list[str]) -> dict[str, Any]:
    """start(query) → knowledge-retrieval → end(result)."""
    graph = echo_graph()
    graph["nodes"].insert(
        1,
        node(
            "kr",
            {
                "type": "knowledge-retrieval",
                "title": "Knowledge",
                "query_variable_selector": ["start", "text"],
                "dataset_ids": dataset_ids,
                "retrieval_mode": "multiple",
                "multiple_retrieval_config": {"top_k": 3, "reranking_enable": False},
            },
        ),
    )
    graph["nodes"][2]["data"]["outputs"] = [
        {"variable": "result", "value_selector": ["kr", "result"]}
    ]
    graph["edges"] = [edge("start", "kr"), edge("kr", "end")]
    return graph


def sync(client: httpx.Client, app_id: str, graph: dict[str, Any], **fields: Any) -> httpx.Response:
    body = {"graph": graph, "features": {"opening_statement": ""}, **fields}
    return client.post(f"{base(app_id)}/draft", json=body)


def draft(client: httpx.Client, app_id: str) -> dict[str, Any]:
    response = client.get(f"{base(app_id)}/draft")
    assert response.status_code == 200, response.text
    return dict(response.json())


def made_dataset(client: httpx.Client) -> str:
    made = client.post("/console/api/datasets", json={"name": f"Docs {time.monotonic_ns()}"})
    assert made.status_code == 201, made.text
    return str(made.json()["data"]["id"])


def app_count(client: httpx.Client, dataset_id: str) -> int:
    return int(client.get(f"/console/api/datasets/{dataset_id}").json()["data"]["app_count"])


class TestDraft:
    def test_a_new_workflow_app_starts_with_a_start_node(
        self, admin: Admin, make_app: AppFactory
    ) -> None:
        app_id = make_app(mode="workflow", name="Flow")["id"]
        found = draft(admin.client, app_id)
        assert [n["data"]["type"] for n in found["graph"]["nodes"]] == ["start"]
        assert found["version"] == "draft"
        assert found["environment_variables"] == [] and found["conversation_variables"] == []
        assert isinstance(found["hash"], str) and len(found["hash"]) == 64
        assert isinstance(found["created_at"], int) and isinstance(found["updated_at"], int)
        assert found["created_by"]["email"] == admin.email
        assert {"id", "graph", "features", "marked_name", "tool_published"} <= set(found)

    def test_a_new_chatflow_starts_with_start_llm_answer(
        self, admin: Admin, make_app: AppFactory
    ) -> None:
        app_id = make_app(mode="advanced-chat", name="Chatflow")["id"]
        graph = draft(admin.client, app_id)["graph"]
        types = {n["id"]: n["data"]["type"] for n in graph["nodes"]}
        assert sorted(types.values()) == ["answer", "llm", "start"]
        ids = {kind: node_id for node_id, kind in types.items()}
        assert {(e["source"], e["target"]) for e in graph["edges"]} == {
            (ids["start"], ids["llm"]),
            (ids["llm"], ids["answer"]),
        }
        llm = next(n for n in graph["nodes"] if n["data"]["type"] == "llm")
        assert llm["data"]["model"]["provider"] == "default"
        answer = next(n for n in graph["nodes"] if n["data"]["type"] == "answer")
        assert answer["data"]["answer"] == f"{{{{#{ids['llm']}.text#}}}}"

    def test_sync_replaces_the_draft_and_a_stale_hash_is_409(
        self, admin: Admin, make_app: AppFactory
    ) -> None:
        client = admin.client
        app_id = make_app(mode="workflow")["id"]
        first = draft(client, app_id)["hash"]

        synced = sync(client, app_id, echo_graph(), hash=first)
        assert synced.status_code == 200, synced.text
        body = synced.json()
        assert body["result"] == "success" and body["hash"] != first
        assert isinstance(body["updated_at"], int)
        now = draft(client, app_id)
        assert now["hash"] == body["hash"]
        assert [n["id"] for n in now["graph"]["nodes"]] == ["start", "end"]
        assert now["features"] == {"opening_statement": ""}

        stale = sync(client, app_id, echo_graph("Stale"), hash=first)
        assert_envelope(stale, 409, "draft_workflow_not_sync", "refresh")
        assert draft(client, app_id)["hash"] == body["hash"]  # unchanged
        fresh = sync(client, app_id, echo_graph("Fresh"), hash=body["hash"])
        assert fresh.status_code == 200, fresh.text
        # Without a hash the draft is simply replaced.
        assert sync(client, app_id, echo_graph("Blind")).status_code == 200

    def test_a_bad_graph_is_400_naming_the_node(self, admin: Admin, make_app: AppFactory) -> None:
        client = admin.client
        app_id = make_app(mode="workflow")["id"]
        before = draft(client, app_id)["hash"]
        graph = echo_graph()
        graph["nodes"].append(node("search", {"type": "tool", "title": "Web search"}))
        assert_envelope(sync(client, app_id, graph), 400, "invalid_param", "'search' (Web search)")
        graph = echo_graph()
        graph["edges"].append(edge("end", "nowhere"))
        assert_envelope(sync(client, app_id, graph), 400, "invalid_param", "'nowhere'")
        no_start = {"nodes": [echo_graph()["nodes"][1]], "edges": []}
        assert_envelope(sync(client, app_id, no_start), 400, "invalid_param", "start")
        missing = client.post(f"{base(app_id)}/draft", json={"graph": echo_graph()})
        assert_envelope(missing, 400, "invalid_param", "features")
        assert draft(client, app_id)["hash"] == before

    def test_secret_variables_are_masked_and_kept_when_sent_back(
        self, admin: Admin, make_app: AppFactory
    ) -> None:
        client = admin.client
        app_id = make_app(mode="workflow")["id"]
        variables = [
            {"name": "api_key", "value_type": "secret", "value": SECRET},
            {"name": "region", "value_type": "string", "value": "eu"},
            {"name": "limit", "value_type": "number", "value": 3},
        ]
        assert (
            sync(client, app_id, echo_graph(), environment_variables=variables).status_code == 200
        )
        shown = draft(client, app_id)["environment_variables"]
        assert [(v["name"], v["value"]) for v in shown] == [
            ("api_key", MASKED),
            ("region", "eu"),
            ("limit", 3),
        ]
        assert all(v["id"] for v in shown)

        # What the editor sends back (the masked value, or Dify's hidden marker) keeps the secret.
        for kept in (MASKED, "[__HIDDEN__]"):
            back = copy.deepcopy(shown)
            back[0]["value"] = kept
            assert sync(client, app_id, echo_graph(), environment_variables=back).status_code == 200
            exported = client.get(
                f"/console/api/apps/{app_id}/export", params={"include_secret": "true"}
            ).json()["data"]
            assert SECRET in exported
        changed = copy.deepcopy(shown)
        changed[0]["value"] = "sk-other-9876543210fedcba"
        assert sync(client, app_id, echo_graph(), environment_variables=changed).status_code == 200
        assert draft(client, app_id)["environment_variables"][0]["value"] == "sk-…dcba"

    def test_bad_variables_are_named(self, admin: Admin, make_app: AppFactory) -> None:
        client = admin.client
        app_id = make_app(mode="advanced-chat")["id"]
        graph = draft(client, app_id)["graph"]
        for field, variables, mentions in (
            ("environment_variables", [{"name": "k", "value_type": "password"}], "[0].value_type"),
            ("environment_variables", [{"name": "1k", "value_type": "string"}], "[0].name"),
            (
                "environment_variables",
                [{"name": "n", "value_type": "number", "value": "many"}],
                "[0].value",
            ),
            (
                "conversation_variables",
                [{"name": "a", "value_type": "string"}, {"name": "a", "value_type": "string"}],
                "[1].name",
            ),
            (
                "conversation_variables",
                [{"name": "tags", "value_type": "array[string]", "value": [1]}],
                "[0].value",
            ),
        ):
            response = sync(client, app_id, graph, **{field: variables})
            assert_envelope(response, 400, "invalid_param", f"{field}{mentions}")

    def test_dify_provider_names_are_mapped_when_synced(
        self, admin: Admin, make_app: AppFactory
    ) -> None:
        client = admin.client
        app_id = make_app(mode="advanced-chat")["id"]
        graph = draft(client, app_id)["graph"]
        llm = next(n for n in graph["nodes"] if n["data"]["type"] == "llm")
        llm["data"]["model"] = {"provider": "langgenius/openai/openai", "name": "gpt-4o"}
        synced = sync(client, app_id, graph)
        assert synced.status_code == 200, synced.text
        assert synced.json()["provider_mappings"] == [
            {
                "where": f"node {llm['id']!r} (LLM) model",
                "model": "gpt-4o",
                "from": "langgenius/openai/openai",
                "to": "default",
                "matched": False,
            }
        ]
        assert "local model" in synced.json()["warnings"][0]
        stored = next(n for n in draft(client, app_id)["graph"]["nodes"] if n["id"] == llm["id"])
        assert stored["data"]["model"]["provider"] == "default"

    def test_only_workflow_and_chatflow_apps_have_workflows(
        self, admin: Admin, make_app: AppFactory
    ) -> None:
        client = admin.client
        app_id = make_app(mode="chat")["id"]
        for response in (
            client.get(f"{base(app_id)}/draft"),
            sync(client, app_id, echo_graph()),
            client.post(f"{base(app_id)}/publish"),
            client.get(f"{base(app_id)}/publish"),
            client.get(base(app_id)),
        ):
            assert_envelope(response, 400, "not_workflow_app", "chat app")

    def test_another_workspaces_app_is_404(
        self, stack: Stack, admin: Admin, make_app: AppFactory
    ) -> None:
        app_id = make_app(mode="workflow")["id"]
        stranger = make_admin(stack, workspace="Elsewhere")
        try:
            for response in (
                stranger.client.get(f"{base(app_id)}/draft"),
                sync(stranger.client, app_id, echo_graph()),
                stranger.client.post(f"{base(app_id)}/publish"),
                stranger.client.get(base(app_id)),
                stranger.client.get(f"/console/api/apps/{app_id}/export"),
            ):
                assert_envelope(response, 404, "app_not_found")
        finally:
            stranger.client.close()

    def test_a_copied_workflow_app_has_the_drafts_graph(
        self, admin: Admin, make_app: AppFactory
    ) -> None:
        client = admin.client
        app_id = make_app(mode="workflow")["id"]
        assert sync(client, app_id, echo_graph("Copied end")).status_code == 200
        copied = client.post(f"/console/api/apps/{app_id}/copy", json={"name": "Copy"})
        assert copied.status_code == 201, copied.text
        copy_draft = draft(client, copied.json()["data"]["id"])
        assert copy_draft["graph"] == draft(client, app_id)["graph"]


class TestPublish:
    def test_publish_makes_versions_and_the_draft_moves_on(
        self, admin: Admin, make_app: AppFactory
    ) -> None:
        client = admin.client
        app_id = make_app(mode="workflow")["id"]
        assert_envelope(client.get(f"{base(app_id)}/publish"), 404, "published_workflow_not_exist")
        assert client.get(base(app_id)).json() == {
            "items": [],
            "page": 1,
            "limit": 10,
            "has_more": False,
        }
        assert sync(client, app_id, echo_graph("First")).status_code == 200

        published = client.post(f"{base(app_id)}/publish")
        assert published.status_code == 200, published.text
        assert published.json()["result"] == "success"
        assert isinstance(published.json()["created_at"], int)
        first = client.get(f"{base(app_id)}/publish").json()
        assert VERSION.match(first["version"]), first["version"]
        assert first["graph"] == draft(client, app_id)["graph"]

        assert sync(client, app_id, echo_graph("Second")).status_code == 200
        assert client.get(f"{base(app_id)}/publish").json()["id"] == first["id"]
        second = client.post(
            f"{base(app_id)}/publish", json={"marked_name": "v2", "marked_comment": "retitled"}
        )
        assert second.status_code == 200, second.text
        latest = client.get(f"{base(app_id)}/publish").json()
        assert latest["id"] != first["id"]
        assert latest["graph"]["nodes"][1]["data"]["title"] == "Second"
        assert (latest["marked_name"], latest["marked_comment"]) == ("v2", "retitled")

        listed = client.get(base(app_id)).json()
        assert [item["version"] for item in listed["items"]] == [
            "draft",
            latest["version"],
            first["version"],
        ]
        page = client.get(base(app_id), params={"page": 2, "limit": 1}).json()
        assert [item["id"] for item in page["items"]] == [latest["id"]]
        assert (page["page"], page["limit"], page["has_more"]) == (2, 1, True)
        named = client.get(base(app_id), params={"named_only": "true"}).json()
        assert [item["id"] for item in named["items"]] == [latest["id"]]
        assert_envelope(
            client.get(base(app_id), params={"limit": 0}), 400, "invalid_param", "limit"
        )

    def test_marked_name_is_limited(self, admin: Admin, make_app: AppFactory) -> None:
        app_id = make_app(mode="workflow")["id"]
        response = admin.client.post(f"{base(app_id)}/publish", json={"marked_name": "x" * 21})
        assert_envelope(response, 400, "invalid_param", "marked_name")

    def test_a_published_knowledge_node_joins_its_dataset(
        self, admin: Admin, make_app: AppFactory
    ) -> None:
        client = admin.client
        dataset_id = made_dataset(client)
        app_id = make_app(mode="workflow")["id"]
        assert sync(client, app_id, knowledge_graph([dataset_id])).status_code == 200
        assert app_count(client, dataset_id) == 0  # a draft does not use the dataset yet

        assert client.post(f"{base(app_id)}/publish").status_code == 200
        wait_for(lambda: app_count(client, dataset_id) == 1, what="the dataset join")
        assert_envelope(client.delete(f"/console/api/datasets/{dataset_id}"), 409, "dataset_in_use")

        assert sync(client, app_id, echo_graph()).status_code == 200
        assert app_count(client, dataset_id) == 1  # until published
        assert client.post(f"{base(app_id)}/publish").status_code == 200
        wait_for(lambda: app_count(client, dataset_id) == 0, what="the join to go")
        assert client.delete(f"/console/api/datasets/{dataset_id}").status_code == 204
