"""Rerank models (Dify's `reranking_model`) on a workspace's own endpoint (the fake model server's
`POST /rerank`, which scores a document by the share of the query's words it holds): the
provider added in the console with its `rerank_models`, listed by the models-types route, named
by a dataset's `retrieval_model`; a search's candidates are then ordered and scored by the rerank
model (its threshold on those scores), in `retrieve`, in a hybrid search's `reranking_model`
mode and in a chat's passages; a model the workspace does not offer is a 400 naming what it
offers; the endpoint failing is a 400 `completion_request_error` naming it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import support
from tests.e2e.conftest import Admin, make_admin, service_app
from tests.e2e.test_indexing import by_text, wait_indexed

API_KEY = "sk-team-rerank"
MODEL = "team-rerank"
PASSAGES = {
    "ferry": "The ferry to the island leaves from pier four at seven.",
    "pier": "Fishing boats tie up at the north pier overnight.",
    "bakery": "Our bakery opens at six and sells rye bread with caraway seeds.",
}
QUERY = "ferry pier seven"
assert_envelope = support.assert_envelope


@pytest.fixture(scope="module")
def admin(service_stack: support.Stack) -> Iterator[Admin]:
    owner = make_admin(service_stack)
    yield owner
    owner.client.close()


@pytest.fixture(scope="module")
def provider(admin: Admin, upstream: Any) -> Iterator[dict[str, Any]]:
    upstream.reset()
    upstream.control(api_key=API_KEY)
    added = admin.client.post(
        "/console/api/workspaces/current/model-providers",
        json={
            "name": "Team rerank",
            "base_url": upstream.base_url,
            "api_key": API_KEY,
            "rerank_models": [MODEL, "fake:status-503", "fake:reversed", "fake:logits"],
        },
    )
    assert added.status_code == 201, added.text
    assert added.json()["data"]["rerank_models"][:2] == [MODEL, "fake:status-503"]
    yield dict(added.json()["data"])
    upstream.reset()


@pytest.fixture(scope="module")
def kb(service_stack: support.Stack, admin: Admin) -> Iterator[httpx.Client]:
    created = admin.client.post("/console/api/datasets/api-keys")
    with service_stack.client(created.json()["data"]["token"]) as client:
        yield client


def reranking(provider: dict[str, Any], model: str = MODEL, **extra: Any) -> dict[str, Any]:
    return {
        "search_method": "semantic_search",
        "reranking_enable": True,
        "reranking_model": {
            "reranking_provider_name": provider["reference"],
            "reranking_model_name": model,
        },
        "top_k": 3,
        **extra,
    }


@pytest.fixture(scope="module")
def dataset(kb: httpx.Client, provider: dict[str, Any]) -> str:
    made = kb.post(
        "/v1/datasets",
        json={"name": f"Harbour {time.monotonic_ns()}", "indexing_technique": "high_quality",
              "retrieval_model": reranking(provider)},
    )  # fmt: skip
    assert made.status_code == 200, made.text
    assert made.json()["retrieval_model_dict"]["reranking_enable"] is True
    dataset_id = str(made.json()["id"])
    for name, text in PASSAGES.items():
        created = by_text(kb, dataset_id, name=name, text=text)
        assert wait_indexed(kb, dataset_id, created["batch"])[-1]["indexing_status"] == "completed"
    return dataset_id


def rerank_calls(upstream: Any) -> list[dict[str, Any]]:
    return [
        r for r in upstream.stats()["log"] if r["model"] == MODEL or r["model"].startswith("fake:")
    ]


def test_the_workspace_lists_its_rerank_models(kb: httpx.Client, provider: dict[str, Any]) -> None:
    listed = kb.get("/v1/workspaces/current/models/model-types/rerank")
    assert listed.status_code == 200, listed.text
    (found,) = listed.json()["data"]
    assert found["provider"] == provider["reference"]
    assert [m["model"] for m in found["models"]] == [
        MODEL, "fake:status-503", "fake:reversed", "fake:logits",
    ]  # fmt: skip
    assert {m["model_type"] for m in found["models"]} == {"rerank"}


def test_a_search_is_ordered_and_scored_by_the_rerank_model(
    kb: httpx.Client, dataset: str, upstream: Any
) -> None:
    before = len(rerank_calls(upstream))
    found = kb.post(f"/v1/datasets/{dataset}/retrieve", json={"query": QUERY})
    assert found.status_code == 200, found.text
    records = found.json()["records"]
    # The fake's scores: all three words, one word ("pier"), none.
    assert [(r["segment"]["content"], r["score"]) for r in records[:2]] == [
        (PASSAGES["ferry"], 1.0), (PASSAGES["pier"], round(1 / 3, 6)),
    ]  # fmt: skip
    (call,) = rerank_calls(upstream)[before:]
    assert call["messages"][0]["content"] == QUERY
    assert {m["content"] for m in call["messages"][1:]} >= {PASSAGES["ferry"], PASSAGES["pier"]}

    # The threshold is on the rerank model's scores.
    strict = kb.post(
        f"/v1/datasets/{dataset}/retrieve",
        json={"query": QUERY, "retrieval_model": {"score_threshold_enabled": True,
                                                  "score_threshold": 0.5}},
    )  # fmt: skip
    assert [r["segment"]["content"] for r in strict.json()["records"]] == [PASSAGES["ferry"]]

    # A hybrid search's `reranking_model` mode reranks the fused candidates.
    hybrid = kb.post(
        f"/v1/datasets/{dataset}/retrieve",
        json={"query": QUERY, "retrieval_model": {"search_method": "hybrid_search",
              "reranking_enable": False, "reranking_mode": "reranking_model"}},
    )  # fmt: skip
    assert hybrid.status_code == 200, hybrid.text
    assert hybrid.json()["records"][0]["score"] == 1.0
    assert len(rerank_calls(upstream)) == before + 3


def test_the_order_is_the_rerank_models(
    kb: httpx.Client, provider: dict[str, Any], dataset: str
) -> None:
    url = f"/v1/datasets/{dataset}/retrieve"
    plain = kb.post(url, json={"query": QUERY, "retrieval_model": {"reranking_enable": False}})
    assert plain.status_code == 200, plain.text
    by_meaning = [r["segment"]["id"] for r in plain.json()["records"]]
    reversed_ = kb.post(
        url, json={"query": QUERY, "retrieval_model": reranking(provider, model="fake:reversed")}
    )
    assert reversed_.status_code == 200, reversed_.text
    assert [r["segment"]["id"] for r in reversed_.json()["records"]] == by_meaning[::-1]
    # Logits keep their order and become scores in (0, 1) a threshold can compare.
    logits = kb.post(
        url, json={"query": QUERY, "retrieval_model": reranking(provider, model="fake:logits")}
    )
    scores = [r["score"] for r in logits.json()["records"]]
    assert logits.json()["records"][0]["segment"]["content"] == PASSAGES["ferry"]
    assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
    # Empty names are no rerank (as Dify has them), whatever reranking_enable says.
    unnamed = kb.post(
        url,
        json={"query": QUERY, "retrieval_model": {"reranking_enable": True, "reranking_model": {
            "reranking_provider_name": "", "reranking_model_name": ""}}},
    )  # fmt: skip
    assert [r["segment"]["id"] for r in unnamed.json()["records"]] == by_meaning


def test_a_model_the_workspace_does_not_offer_is_refused_in_words(
    kb: httpx.Client, provider: dict[str, Any], dataset: str
) -> None:
    made = kb.post(
        "/v1/datasets",
        json={"name": "Nope", "retrieval_model": reranking(provider, model="no-such-model")},
    )
    assert made.status_code == 400, made.text
    assert f"this workspace offers '{MODEL}' of provider" in made.json()["message"]
    asked = kb.post(
        f"/v1/datasets/{dataset}/retrieve",
        json={"query": QUERY, "retrieval_model": reranking(provider, model="other")},
    )
    assert_envelope(asked, 400, "invalid_param", "retrieval_model.reranking_model 'other'")


def test_the_endpoint_failing_is_a_model_error(
    kb: httpx.Client, provider: dict[str, Any], dataset: str
) -> None:
    failed = kb.post(
        f"/v1/datasets/{dataset}/retrieve",
        json={"query": QUERY, "retrieval_model": reranking(provider, model="fake:status-503")},
    )
    assert failed.status_code == 400, failed.text
    assert failed.json()["code"] == "completion_request_error"
    assert "answered HTTP 503" in failed.json()["message"]


def test_a_chat_uses_the_datasets_rerank_model(
    service_stack: support.Stack, admin: Admin, upstream: Any, dataset: str
) -> None:
    app = service_app(
        service_stack, admin, mode="chat", pre_prompt="You answer questions.",
        dataset_configs={
            "retrieval_model": "multiple",
            "datasets": {"datasets": [{"dataset": {"enabled": True, "id": dataset}}]},
            "top_k": 1,
        },
    )  # fmt: skip
    upstream.control(api_key=None)
    try:
        with app.client:
            answered = app.client.post(
                "/chat-messages",
                json={"inputs": {}, "query": QUERY, "user": "lee", "response_mode": "blocking",
                      "auto_generate_name": False},
            )  # fmt: skip
    finally:
        upstream.control(api_key=API_KEY)
    assert answered.status_code == 200, answered.text
    (used,) = answered.json()["metadata"]["retriever_resources"]
    assert (used["content"], used["score"]) == (PASSAGES["ferry"], 1.0)
