"""Datasets on a workspace's own OpenAI-compatible embedding endpoint (the fake model server),
as a team sets one up: the provider added in the console with its `embedding_models`, listed by
`GET /v1/workspaces/current/models/model-types/text-embedding`, named by a dataset at creation,
then used for everything the dataset embeds (indexing on the `dataset` queue, queries, segment
edits) with the provider's key. The endpoint down while indexing: the document retries and
completes; refusing: the document ends in `error` with its words; down for a query: 400
`completion_request_error`; the provider removed: `embedding_available` false and 400
`provider_not_initialize`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import support
from tests.e2e.conftest import Admin, make_admin
from tests.e2e.test_indexing import wait_indexed

STACK_ENV = {"CONDUIT_RAG_RETRY_BASE": "0.2", "CONDUIT_RAG_RETRY_MAX": "0.5"}
API_KEY = "sk-team-embeddings"
MODEL = "team-embed"
PASSAGES = {
    "reef": "The lighthouse keeper logs every ship that passes the northern reef.",
    "bakery": "Our bakery opens at six and sells rye bread with caraway seeds.",
    "leave": "Employees receive twenty five days of paid leave every calendar year.",
}
assert_envelope = support.assert_envelope


@pytest.fixture(scope="module")
def admin(service_stack: support.Stack) -> Iterator[Admin]:
    owner = make_admin(service_stack)
    yield owner
    owner.client.close()


@pytest.fixture(scope="module")
def provider(admin: Admin, upstream: Any) -> Iterator[dict[str, Any]]:
    upstream.reset()
    upstream.control(api_key=API_KEY)  # the endpoint refuses calls without the team's key
    added = admin.client.post(
        "/console/api/workspaces/current/model-providers",
        json={
            "name": "Team embeddings",
            "base_url": upstream.base_url,
            "api_key": API_KEY,
            "embedding_models": [MODEL, "fake:status-503", "fake:status-400"],
        },
    )
    assert added.status_code == 201, added.text
    yield dict(added.json()["data"])
    upstream.reset()


@pytest.fixture(scope="module")
def kb(service_stack: support.Stack, admin: Admin) -> Iterator[httpx.Client]:
    created = admin.client.post("/console/api/datasets/api-keys")
    assert created.status_code == 201, created.text
    with service_stack.client(created.json()["data"]["token"]) as client:
        yield client


def create_dataset(kb: httpx.Client, provider: dict[str, Any], model: str = MODEL) -> str:
    made = kb.post(
        "/v1/datasets",
        json={
            "name": f"Team {time.monotonic_ns() % 10**9}",
            "indexing_technique": "high_quality",
            "embedding_model": model,
            "embedding_model_provider": provider["reference"],
        },
    )
    assert made.status_code == 200, made.text
    body = made.json()
    assert (body["embedding_model_provider"], body["embedding_model"]) == (
        provider["reference"],
        model,
    )
    assert body["embedding_available"] is True
    return str(body["id"])


def add_text(kb: httpx.Client, dataset_id: str, name: str, text: str) -> dict[str, Any]:
    response = kb.post(
        f"/v1/datasets/{dataset_id}/document/create-by-text",
        json={"name": name, "text": text, "process_rule": {"mode": "automatic"}},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def embedding_calls(upstream: Any, model: str) -> list[dict[str, Any]]:
    return [
        record
        for record in upstream.stats()["log"]
        if record["model"] == model and record["messages"][:1]
        and record["messages"][0]["role"] == "input"
    ]  # fmt: skip


def retrieve(kb: httpx.Client, dataset_id: str, query: str) -> httpx.Response:
    return kb.post(
        f"/v1/datasets/{dataset_id}/retrieve",
        json={
            "query": query,
            "retrieval_model": {
                "search_method": "semantic_search",
                "top_k": 3,
                "score_threshold_enabled": False,
            },
        },
    )


def test_the_workspace_lists_its_embedding_models(
    kb: httpx.Client, provider: dict[str, Any]
) -> None:
    listed = kb.get("/v1/workspaces/current/models/model-types/text-embedding")
    assert listed.status_code == 200, listed.text
    by_provider = {p["provider"]: p for p in listed.json()["data"]}
    assert set(by_provider) == {"conduit", provider["reference"]}
    team = by_provider[provider["reference"]]
    assert team["label"]["en_US"] == "Team embeddings"
    assert [m["model"] for m in team["models"]] == [MODEL, "fake:status-503", "fake:status-400"]
    assert API_KEY not in listed.text


def test_a_dataset_indexes_and_searches_with_the_workspace_model(
    kb: httpx.Client, provider: dict[str, Any], upstream: Any
) -> None:
    dataset_id = create_dataset(kb, provider)
    before = len(embedding_calls(upstream, MODEL))
    batches = [add_text(kb, dataset_id, name, text)["batch"] for name, text in PASSAGES.items()]
    for batch in batches:
        assert wait_indexed(kb, dataset_id, batch)[-1]["indexing_status"] == "completed"
    # Every passage went to the team's endpoint under its model, with its key (the fake
    # refuses anything else with a 401, which would have failed the documents).
    indexed = embedding_calls(upstream, MODEL)[before:]
    sent = {message["content"] for record in indexed for message in record["messages"]}
    assert all(any(text in item for item in sent) for text in PASSAGES.values()), sent
    assert all(record["outcome"] == "completed" for record in indexed)

    found = retrieve(kb, dataset_id, "when does the bakery open, and what bread")
    assert found.status_code == 200, found.text
    records = found.json()["records"]
    assert records[0]["segment"]["content"] == PASSAGES["bakery"]
    assert records[0]["score"] > records[-1]["score"]
    # The query itself was embedded by the team's model too.
    queries = embedding_calls(upstream, MODEL)[before + len(indexed) :]
    assert [r["messages"][0]["content"] for r in queries] == [
        "when does the bakery open, and what bread"
    ]

    # A segment added by hand is embedded by the same model and found by it.
    document_id = kb.get(f"/v1/datasets/{dataset_id}/documents").json()["data"][0]["id"]
    added = kb.post(
        f"/v1/datasets/{dataset_id}/documents/{document_id}/segments",
        json={"segments": [{"content": "The ferry to the island leaves from pier nine."}]},
    )
    assert added.status_code == 200, added.text
    ferry = retrieve(kb, dataset_id, "which pier does the island ferry leave from")
    assert ferry.json()["records"][0]["segment"]["content"].startswith("The ferry to the island")


def test_choices_the_workspace_does_not_offer_are_refused_in_words(
    kb: httpx.Client, provider: dict[str, Any], service_stack: support.Stack
) -> None:
    unknown_model = kb.post(
        "/v1/datasets",
        json={
            "name": "Unknown model",
            "embedding_model": "text-embedding-3-large",
            "embedding_model_provider": provider["reference"],
        },
    )
    assert_envelope(unknown_model, 400, "invalid_param", "'text-embedding-3-large' of provider")
    assert f"'{MODEL}' of provider '{provider['reference']}'" in unknown_model.json()["message"]

    # Another workspace cannot name this one's provider.
    stranger = make_admin(service_stack)
    try:
        key = stranger.client.post("/console/api/datasets/api-keys").json()["data"]["token"]
        with service_stack.client(key) as other:
            refused = other.post(
                "/v1/datasets",
                json={
                    "name": "Borrowed",
                    "embedding_model": MODEL,
                    "embedding_model_provider": provider["reference"],
                },
            )
            assert_envelope(refused, 400, "invalid_param", "is not available")
            assert provider["reference"] not in refused.json()["message"].split("offers")[1]
    finally:
        stranger.client.close()


def test_an_endpoint_down_while_indexing_is_retried_and_the_document_completes(
    kb: httpx.Client, provider: dict[str, Any], upstream: Any
) -> None:
    dataset_id = create_dataset(kb, provider)
    upstream.control(mode="status-503", times=2)  # the next two calls fail
    # A text no dataset embedded yet (the embedding cache answers for known ones).
    text = f"{PASSAGES['reef']} Logbook {time.monotonic_ns()}."
    batch = add_text(kb, dataset_id, "reef", text)["batch"]
    assert wait_indexed(kb, dataset_id, batch)[-1]["indexing_status"] == "completed"
    outcomes = [r["outcome"] for r in embedding_calls(upstream, MODEL)[-3:]]
    assert outcomes == ["error-503", "error-503", "completed"], outcomes
    assert retrieve(kb, dataset_id, "lighthouse reef ships").json()["records"]


def test_an_endpoint_refusing_fails_the_document_and_a_query_in_words(
    kb: httpx.Client, provider: dict[str, Any]
) -> None:
    refusing = create_dataset(kb, provider, "fake:status-400")
    batch = add_text(kb, refusing, "reef", PASSAGES["reef"])["batch"]
    ended = wait_indexed(kb, refusing, batch)[-1]
    assert ended["indexing_status"] == "error"
    assert (
        "'fake:status-400'" in ended["error"] and "refused the request with 400" in ended["error"]
    )

    down = create_dataset(kb, provider, "fake:status-503")
    query = retrieve(kb, down, "anything at all")
    assert_envelope(query, 400, "completion_request_error", "The query could not be embedded")
    assert "'fake:status-503'" in query.json()["message"]


def test_a_removed_provider_leaves_its_datasets_unavailable_not_broken(
    kb: httpx.Client, admin: Admin, upstream: Any
) -> None:
    added = admin.client.post(
        "/console/api/workspaces/current/model-providers",
        json={
            "name": f"Short-lived {time.monotonic_ns()}",
            "base_url": upstream.base_url,
            "api_key": API_KEY,
            "embedding_models": [MODEL],
        },
    )
    assert added.status_code == 201, added.text
    short_lived = added.json()["data"]
    dataset_id = create_dataset(kb, short_lived)
    batch = add_text(kb, dataset_id, "leave", PASSAGES["leave"])["batch"]
    assert wait_indexed(kb, dataset_id, batch)[-1]["indexing_status"] == "completed"

    removed = admin.client.delete(
        f"/console/api/workspaces/current/model-providers/{short_lived['id']}"
    )
    assert removed.status_code == 204, removed.text
    assert kb.get(f"/v1/datasets/{dataset_id}").json()["embedding_available"] is False
    query = retrieve(kb, dataset_id, "paid leave")
    assert_envelope(query, 400, "provider_not_initialize", "no longer offered by its provider")
    # Its passages can still be found by their words.
    by_words = kb.post(
        f"/v1/datasets/{dataset_id}/retrieve",
        json={"query": "paid leave", "retrieval_model": {"search_method": "full_text_search"}},
    )
    assert by_words.status_code == 200, by_words.text
    assert by_words.json()["records"][0]["segment"]["content"] == PASSAGES["leave"]
