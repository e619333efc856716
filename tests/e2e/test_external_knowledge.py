"""External knowledge bases (Dify's) against a real server and a real external knowledge
service started by the test (`tests/fakes/external_knowledge.py`): a connection is probed when
made (a wrong key, a missing endpoint, no answer and SSRF targets refused in words, nothing
stored), listed with its key masked, changed, and kept while a dataset uses it; an external
dataset made in the console or through the Knowledge API shows its binding; hit testing and
`retrieve` ask the service with Dify's body (knowledge id, top_k, the threshold when enabled);
its documents are refused; a failing service is a 502 naming it; a chat app's run puts the
service's passages into the prompt and `retriever_resources`, and answers without them when the
service is down."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import support
from tests.e2e.conftest import Admin, make_admin, service_app
from tests.e2e.test_indexing import by_text, wait_indexed
from tests.fakes.external_knowledge import ExternalKnowledgeService, external_knowledge

# Loopback is where the test's service is; nothing else private is allowed.
STACK_ENV = {"CONDUIT_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}
KEY = "ek-secret-key-0001"
FERRY = "The ferry to the island leaves from pier four at seven every morning."
MARKET = "The fish market opens at six and closes at noon on Saturdays."
assert_envelope = support.assert_envelope


@pytest.fixture(scope="module")
def service() -> Iterator[ExternalKnowledgeService]:
    with external_knowledge(KEY) as running:
        running.add("harbour", FERRY, title="ferry.md", document_id="doc-ferry", page=1)
        running.add("harbour", MARKET, title="market.md")
        yield running


@pytest.fixture
def console(service_admin: Admin) -> httpx.Client:
    return service_admin.client


def connect(console: httpx.Client, service: ExternalKnowledgeService, name: str) -> str:
    made = console.post(
        "/console/api/datasets/external-knowledge-api",
        json={"name": name, "settings": {"endpoint": service.base_url, "api_key": KEY}},
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def external_dataset(console: httpx.Client, api_id: str, **extra: Any) -> dict[str, Any]:
    made = console.post(
        "/console/api/datasets/external",
        json={
            "name": f"Harbour {time.monotonic_ns()}",
            "external_knowledge_api_id": api_id,
            "external_knowledge_id": "harbour",
            **extra,
        },
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


def apis(console: httpx.Client) -> int:
    return int(console.get("/console/api/datasets/external-knowledge-api").json()["total"])


class TestConnections:
    def test_a_connection_is_probed_before_it_is_kept(
        self, console: httpx.Client, service: ExternalKnowledgeService
    ) -> None:
        before = apis(console)
        url = "/console/api/datasets/external-knowledge-api"
        closed = support.free_port()
        cases = [
            ({"api_key": "wrong"}, "Forbidden: Authorization failed with the provided api_key"),
            ({"endpoint": f"{service.base_url}/nowhere"}, "Not Found: failed to connect"),
            ({"endpoint": f"http://127.0.0.1:{closed}"}, "failed to connect to the endpoint"),
            ({"endpoint": "ftp://example.com"}, "must start with http:// or https://"),
            ({"endpoint": "http://169.254.169.254"}, "settings.endpoint: the host 169.254.169.254"),
            ({"api_key": ""}, "settings.api_key is required."),
        ]
        for change, message in cases:
            settings = {"endpoint": service.base_url, "api_key": KEY, **change}
            refused = console.post(url, json={"name": "Harbour KB", "settings": settings})
            assert refused.status_code == 400, (change, refused.text)
            assert message in refused.json()["message"], (change, refused.json())
        assert_envelope(
            console.post(url, json={"name": "Harbour KB"}),
            400, "invalid_param", "settings is required: {endpoint, api_key}.",
        )  # fmt: skip
        for settings, message in (
            ({"endpoint": f"{service.base_url}?x=1", "api_key": KEY}, "without a query"),
            ({"endpoint": service.base_url, "api_key": "clé"}, "printable ASCII"),
        ):
            refused = console.post(url, json={"name": "Harbour KB", "settings": settings})
            assert refused.status_code == 400 and message in refused.json()["message"], refused.text
        assert apis(console) == before

    def test_listed_masked_changed_and_kept_while_in_use(
        self,
        console: httpx.Client,
        service: ExternalKnowledgeService,
        service_stack: support.Stack,
    ) -> None:
        api_id = connect(console, service, f"Harbour KB {time.monotonic_ns()}")
        url = f"/console/api/datasets/external-knowledge-api/{api_id}"
        found = console.get(url).json()
        assert found["settings"]["endpoint"] == service.base_url
        assert found["settings"]["api_key"] != KEY and found["settings"]["api_key"].endswith("0001")
        assert found["dataset_bindings"] == []
        assert set(found) >= {"id", "tenant_id", "name", "description", "settings", "created_by",
                              "created_at"}  # fmt: skip
        listed = console.get("/console/api/datasets/external-knowledge-api").json()
        assert api_id in [item["id"] for item in listed["data"]]

        # The masked key sent back keeps the stored one; a wrong new key is refused.
        renamed = console.patch(
            url,
            json={"name": "Renamed KB", "settings": {**found["settings"]}},
        )
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["name"] == "Renamed KB"
        wrong = console.patch(
            url, json={"settings": {"endpoint": service.base_url, "api_key": "wrong"}}
        )
        assert wrong.status_code == 400, wrong.text
        # The stored key never goes to a new endpoint: it must be typed again.
        moved = console.patch(
            url, json={"settings": {"endpoint": "http://127.0.0.2:9", "api_key": "[__HIDDEN__]"}}
        )
        assert moved.status_code == 400, moved.text
        assert "a new endpoint needs the API key typed again" in moved.json()["message"]
        assert console.get(url).json()["settings"]["endpoint"] == service.base_url

        # Another workspace sees none of it.
        with make_admin(service_stack, workspace="Elsewhere").client as stranger:
            assert stranger.get(url).status_code == 404
            assert stranger.delete(url).status_code == 404
            assert stranger.get(f"{url}/use-check").status_code == 404
            taken = stranger.post(
                "/console/api/datasets/external",
                json={"name": "Theirs", "external_knowledge_api_id": api_id,
                      "external_knowledge_id": "harbour"},
            )  # fmt: skip
            assert_envelope(taken, 404, "not_found", "API template not found.")

        dataset = external_dataset(console, api_id)
        assert dataset["provider"] == "external"
        assert dataset["external_knowledge_info"] == {
            "external_knowledge_id": "harbour",
            "external_knowledge_api_id": api_id,
            "external_knowledge_api_name": "Renamed KB",
            "external_knowledge_api_endpoint": service.base_url,
        }
        assert dataset["external_retrieval_model"] == {
            "top_k": 2, "score_threshold": 0.0, "score_threshold_enabled": False,
        }  # fmt: skip
        assert console.get(f"{url}/use-check").json() == {"is_using": True, "count": 1}
        assert console.get(url).json()["dataset_bindings"] == [
            {"id": dataset["id"], "name": dataset["name"]}
        ]
        in_use = console.delete(url)
        assert in_use.status_code == 409, in_use.text
        assert in_use.json()["code"] == "external_knowledge_api_in_use"
        assert dataset["name"] in in_use.json()["message"]

        assert console.delete(f"/console/api/datasets/{dataset['id']}").status_code == 204
        assert console.get(f"{url}/use-check").json() == {"is_using": False, "count": 0}
        assert console.delete(url).status_code == 204
        assert_envelope(console.get(url), 404, "not_found", "API template not found.")
        missing = console.post(
            "/console/api/datasets/external",
            json={"name": "x", "external_knowledge_api_id": api_id, "external_knowledge_id": "h"},
        )
        assert_envelope(missing, 404, "not_found", "API template not found.")


class TestSearch:
    def test_hit_testing_and_retrieve_ask_the_service(
        self,
        console: httpx.Client,
        service: ExternalKnowledgeService,
        service_stack: support.Stack,
    ) -> None:
        api_id = connect(console, service, f"Search KB {time.monotonic_ns()}")
        dataset = external_dataset(console, api_id)
        hit = console.post(
            f"/console/api/datasets/{dataset['id']}/external-hit-testing",
            json={"query": "When does the ferry leave the pier?"},
        )
        assert hit.status_code == 200, hit.text
        body = hit.json()
        assert body["query"] == {"content": "When does the ferry leave the pier?"}
        first = body["records"][0]
        assert first["content"] == FERRY and first["title"] == "ferry.md"
        assert first["metadata"] == {"document_id": "doc-ferry", "page": 1}
        assert set(first) == {"content", "title", "score", "metadata"}
        sent = service.requests[-1]
        assert sent == {
            "knowledge_id": "harbour",
            "query": "When does the ferry leave the pier?",
            "retrieval_setting": {"top_k": 2, "score_threshold": 0.0},
        }

        # The threshold goes to the service (when enabled) and is applied here too.
        strict = console.post(
            f"/console/api/datasets/{dataset['id']}/external-hit-testing",
            json={
                "query": "ferry market",
                "external_retrieval_model": {
                    "top_k": 5, "score_threshold": 0.9, "score_threshold_enabled": True,
                },
            },
        )  # fmt: skip
        assert strict.status_code == 200, strict.text
        assert strict.json()["records"] == []
        assert service.requests[-1]["retrieval_setting"] == {"top_k": 5, "score_threshold": 0.9}

        # The Knowledge API: an external dataset made, changed and searched with a dataset key.
        key = console.post("/console/api/datasets/api-keys").json()["data"]["token"]
        with service_stack.client(key) as kb:
            made = kb.post(
                "/v1/datasets",
                json={
                    "name": f"API harbour {time.monotonic_ns()}",
                    "provider": "external",
                    "external_knowledge_api_id": api_id,
                    "external_knowledge_id": "harbour",
                },
            )
            assert made.status_code == 200, made.text
            dataset_id = made.json()["id"]
            assert made.json()["external_knowledge_info"]["external_knowledge_id"] == "harbour"
            changed = kb.patch(
                f"/v1/datasets/{dataset_id}",
                json={
                    "external_retrieval_model": {
                        "top_k": 3, "score_threshold": 0.4, "score_threshold_enabled": True,
                    }
                },
            )  # fmt: skip
            assert changed.status_code == 200, changed.text
            # A partial change keeps the rest.
            changed = kb.patch(
                f"/v1/datasets/{dataset_id}", json={"external_retrieval_model": {"top_k": 1}}
            )
            assert changed.json()["external_retrieval_model"] == {
                "top_k": 1, "score_threshold": 0.4, "score_threshold_enabled": True,
            }  # fmt: skip
            found = kb.post(f"/v1/datasets/{dataset_id}/retrieve", json={"query": "fish market"})
            assert found.status_code == 200, found.text
            assert [r["content"] for r in found.json()["records"]] == [MARKET]
            assert service.requests[-1]["retrieval_setting"]["top_k"] == 1

            refused = kb.post(
                f"/v1/datasets/{dataset_id}/document/create-by-text",
                json={"name": "n", "text": "t", "indexing_technique": "high_quality",
                      "process_rule": {"mode": "automatic"}},
            )  # fmt: skip
            assert refused.status_code == 400, refused.text
            assert "External datasets are not supported" in refused.json()["message"]
            bad = kb.patch(f"/v1/datasets/{dataset_id}", json={"indexing_technique": "economy"})
            assert bad.status_code == 400, bad.text

            # Dify's SDK sends `retrieval_model`: its top_k and threshold apply.
            sdk = kb.post(
                f"/v1/datasets/{dataset_id}/retrieve",
                json={"query": "fish market", "retrieval_model": {"top_k": 2,
                      "score_threshold_enabled": False}},
            )  # fmt: skip
            assert sdk.status_code == 200, sdk.text
            assert service.requests[-1]["retrieval_setting"] == {"top_k": 2, "score_threshold": 0.0}

            # A service that ignores top_k and the threshold, sorts nothing and sends odd
            # records: the answer is still at most top_k, above the threshold, best first.
            service.answer_raw(
                {
                    "records": [
                        {"content": "low", "score": 0.1, "title": "a", "metadata": None},
                        {"content": "best", "score": 7, "title": "b"},
                        {"content": "mid", "score": 0.6},
                        {"score": 0.9, "title": "no content"},
                        "not a record",
                        {"content": "good", "score": 0.8, "metadata": {"k": 1}},
                    ]
                }
            )
            try:
                messy = kb.post(
                    f"/v1/datasets/{dataset_id}/retrieve",
                    json={"query": "q", "external_retrieval_model": {
                        "top_k": 3, "score_threshold": 0.5, "score_threshold_enabled": True}},
                )  # fmt: skip
                service.answer_raw({"records": "nope"})
                shapeless = kb.post(f"/v1/datasets/{dataset_id}/retrieve", json={"query": "q"})
            finally:
                service.answer_raw(None)
            assert messy.status_code == 200, messy.text
            assert [(r["content"], r["score"], r["metadata"]) for r in messy.json()["records"]] == [
                ("best", 1.0, {}), ("good", 0.8, {"k": 1}), ("mid", 0.6, {}),
            ]  # fmt: skip
            assert shapeless.status_code == 502, shapeless.text
            assert '{"records": [...]}' in shapeless.json()["message"]

            service.fail_with(500)
            try:
                failed = kb.post(f"/v1/datasets/{dataset_id}/retrieve", json={"query": "ferry"})
            finally:
                service.fail_with(None)
            assert failed.status_code == 502, failed.text
            assert failed.json()["code"] == "external_knowledge_error"
            assert "answered HTTP 500" in failed.json()["message"]


class TestRuns:
    def test_a_chat_answers_from_the_services_passages(
        self,
        console: httpx.Client,
        service: ExternalKnowledgeService,
        service_stack: support.Stack,
        service_admin: Admin,
        upstream: Any,
    ) -> None:
        api_id = connect(console, service, f"Chat KB {time.monotonic_ns()}")
        # (The fake scores by shared words: "the" alone gives the market 0.2.)
        setting = {"top_k": 2, "score_threshold": 0.5, "score_threshold_enabled": True}
        dataset = external_dataset(console, api_id, external_retrieval_model=setting)
        upstream.reset()
        app = service_app(
            service_stack, service_admin, mode="chat", pre_prompt="You answer questions.",
            dataset_configs={
                "retrieval_model": "multiple",
                "datasets": {"datasets": [{"dataset": {"enabled": True, "id": dataset["id"]}}]},
                "top_k": 2,
            },
        )  # fmt: skip
        question = {"inputs": {}, "query": "The ferry to the island?", "user": "sam",
                    "response_mode": "blocking", "auto_generate_name": False}  # fmt: skip
        with app.client:
            answered = app.client.post("/chat-messages", json=question)
            assert answered.status_code == 200, answered.text
            (used,) = answered.json()["metadata"]["retriever_resources"]
            assert used["dataset_id"] == dataset["id"]
            assert used["data_source_type"] == "external"
            assert used["document_name"] == "ferry.md"
            assert used["document_id"] == "doc-ferry"
            assert used["segment_id"] is None
            assert used["content"] == FERRY
            assert used["position"] == 1
            prompt = upstream.stats()["log"][-1]["messages"][0]["content"]
            assert FERRY in prompt and MARKET not in prompt

            # The service down: the run answers without its passages.
            service.fail_with(503)
            try:
                again = app.client.post("/chat-messages", json=question)
            finally:
                service.fail_with(None)
            assert again.status_code == 200, again.text
            assert again.json()["metadata"]["retriever_resources"] == []

    def test_a_run_merges_internal_and_external_passages_by_score(
        self,
        console: httpx.Client,
        service: ExternalKnowledgeService,
        service_stack: support.Stack,
        service_admin: Admin,
        upstream: Any,
    ) -> None:
        key = console.post("/console/api/datasets/api-keys").json()["data"]["token"]
        with service_stack.client(key) as kb:
            made = kb.post("/v1/datasets", json={"name": f"Own {time.monotonic_ns()}"})
            own = made.json()["id"]
            created = by_text(kb, own, name="island", text="The island's ferry pier has a cafe.")
            assert wait_indexed(kb, own, created["batch"])[-1]["indexing_status"] == "completed"
        api_id = connect(console, service, f"Mixed KB {time.monotonic_ns()}")
        theirs = external_dataset(console, api_id)["id"]
        upstream.reset()
        app = service_app(
            service_stack, service_admin, mode="chat", pre_prompt="You answer questions.",
            dataset_configs={
                "retrieval_model": "multiple",
                "datasets": {"datasets": [
                    {"dataset": {"enabled": True, "id": own}},
                    {"dataset": {"enabled": True, "id": theirs}},
                ]},
                "top_k": 3,
            },
        )  # fmt: skip
        with app.client:
            answered = app.client.post(
                "/chat-messages",
                json={"inputs": {}, "query": "the ferry to the island pier", "user": "kim",
                      "response_mode": "blocking", "auto_generate_name": False},
            )  # fmt: skip
        assert answered.status_code == 200, answered.text
        used = answered.json()["metadata"]["retriever_resources"]
        assert {r["dataset_id"] for r in used} == {own, theirs}
        assert [r["position"] for r in used] == list(range(1, len(used) + 1))
        scores = [r["score"] for r in used]
        assert scores == sorted(scores, reverse=True)
        assert len(used) <= 3
