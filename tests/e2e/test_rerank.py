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
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests import support
from tests.e2e.conftest import Admin, make_admin, service_app
from tests.e2e.test_indexing import by_text, wait_indexed
from tests.e2e.test_workflow_runs import published_app, run

WORKFLOW = Path(__file__).parent / "workflows" / "nodes" / "knowledge_retrieval.yml"

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


# --- an app over several datasets (Dify's multiple retrieval and its reranking) --------------

GULLS = "Seven gulls sit on the roof of the ferry."
MOORINGS = "Moorings by the pier cost seven pounds a night."


@pytest.fixture(scope="module")
def gulls(kb: httpx.Client) -> str:
    """A second dataset, with no rerank model of its own."""
    made = kb.post(
        "/v1/datasets",
        json={"name": f"Gulls {time.monotonic_ns()}", "indexing_technique": "high_quality"},
    )
    assert made.status_code == 200, made.text
    dataset_id = str(made.json()["id"])
    created = by_text(kb, dataset_id, name="gulls", text=GULLS)
    assert wait_indexed(kb, dataset_id, created["batch"])[-1]["indexing_status"] == "completed"
    return dataset_id


@pytest.fixture(scope="module")
def moorings(kb: httpx.Client) -> str:
    """A dataset searched by keywords only (economy: no embeddings)."""
    made = kb.post(
        "/v1/datasets",
        json={"name": f"Moorings {time.monotonic_ns()}", "indexing_technique": "economy"},
    )
    assert made.status_code == 200, made.text
    dataset_id = str(made.json()["id"])
    created = by_text(kb, dataset_id, name="moorings", text=MOORINGS)
    assert wait_indexed(kb, dataset_id, created["batch"])[-1]["indexing_status"] == "completed"
    return dataset_id


def over(*dataset_ids: str, **reranking: Any) -> dict[str, Any]:
    """An app's `dataset_configs` over the datasets, as Dify's console writes it."""
    return {
        "retrieval_model": "multiple",
        "datasets": {"datasets": [{"dataset": {"enabled": True, "id": i}} for i in dataset_ids]},
        "top_k": 3,
        **reranking,
    }


def passages(app: Any, query: str = QUERY) -> list[dict[str, Any]]:
    """The passages a blocking chat of `app` used (its `retriever_resources`)."""
    with app.client:
        answered = app.client.post(
            "/chat-messages",
            json={"inputs": {}, "query": query, "user": "lee", "response_mode": "blocking",
                  "auto_generate_name": False},
        )  # fmt: skip
    assert answered.status_code == 200, answered.text
    return list(answered.json()["metadata"]["retriever_resources"])


@pytest.fixture
def unkeyed(upstream: Any) -> Iterator[None]:
    """The fake chat model asked without a key (the server's model), the rerank model with."""
    upstream.control(api_key=None)
    yield
    upstream.control(api_key=API_KEY)


def test_an_apps_rerank_model_orders_every_datasets_passages_together(
    service_stack: support.Stack,
    admin: Admin,
    upstream: Any,
    provider: dict[str, Any],
    dataset: str,
    gulls: str,
    unkeyed: None,
) -> None:
    model = {"reranking_provider_name": provider["reference"], "reranking_model_name": MODEL}
    app = service_app(
        service_stack, admin, mode="chat",
        dataset_configs=over(dataset, gulls, reranking_enable=True,
                             reranking_mode="reranking_model", reranking_model=model),
    )  # fmt: skip
    before = len(rerank_calls(upstream))
    used = passages(app)
    # The fake's scores: the share of the query's three words a passage holds.
    assert [(p["content"], p["dataset_id"], p["score"]) for p in used] == [
        (PASSAGES["ferry"], dataset, 1.0),
        (GULLS, gulls, round(2 / 3, 6)),
        (PASSAGES["pier"], dataset, round(1 / 3, 6)),
    ]
    assert [p["position"] for p in used] == [1, 2, 3]
    # One call judged both datasets' passages (the first dataset's own rerank model is left
    # out: the app's judges them all).
    (call,) = rerank_calls(upstream)[before:]
    assert call["model"] == MODEL and call["messages"][0]["content"] == QUERY
    assert {m["content"] for m in call["messages"][1:]} == {*PASSAGES.values(), GULLS}

    # The app's threshold is on the rerank model's scores; its order is the model's.
    strict = service_app(
        service_stack, admin, mode="chat",
        dataset_configs=over(dataset, gulls, reranking_model=model,
                             score_threshold_enabled=True, score_threshold=0.5),
    )  # fmt: skip
    assert [p["content"] for p in passages(strict)] == [PASSAGES["ferry"], GULLS]
    turned = service_app(
        service_stack, admin, mode="chat",
        dataset_configs=over(dataset, gulls, reranking_model={**model,
                             "reranking_model_name": "fake:reversed"}),
    )  # fmt: skip
    before = len(rerank_calls(upstream))
    reordered = passages(turned)
    (call,) = rerank_calls(upstream)[before:]
    sent = [m["content"] for m in call["messages"][1:]]
    assert [p["content"] for p in reordered] == sent[::-1][:3]

    # Turned off (as Dify's console writes it): each dataset's own search and scores.
    off = service_app(
        service_stack, admin, mode="chat",
        dataset_configs=over(dataset, gulls, reranking_enable=False, reranking_model=model),
    )  # fmt: skip
    before = len(rerank_calls(upstream))
    plain = passages(off)
    assert next(p["content"] for p in plain) == PASSAGES["ferry"]
    # (the first dataset's own rerank model judged its passages, and only those)
    (call,) = rerank_calls(upstream)[before:]
    assert {m["content"] for m in call["messages"][1:]} == set(PASSAGES.values())


def test_a_weighted_score_scores_every_dataset_by_the_apps_weights(
    service_stack: support.Stack,
    admin: Admin,
    kb: httpx.Client,
    upstream: Any,
    dataset: str,
    gulls: str,
    moorings: str,
    unkeyed: None,
) -> None:
    def weighted(vector: float, keyword: float, **more: Any) -> list[dict[str, Any]]:
        app = service_app(
            service_stack, admin, mode="chat",
            dataset_configs=over(dataset, gulls, moorings, reranking_mode="weighted_score",
                                 weights={"vector_setting": {"vector_weight": vector},
                                          "keyword_setting": {"keyword_weight": keyword}},
                                 **more),
        )  # fmt: skip
        return passages(app)

    def searched(method: str, *datasets: str) -> dict[str, float]:
        """Each dataset's own scores by one method (no rerank): segment → score."""
        scores: dict[str, float] = {}
        for dataset_id in datasets or (dataset, gulls):
            found = kb.post(
                f"/v1/datasets/{dataset_id}/retrieve",
                json={"query": QUERY, "retrieval_model": {"search_method": method,
                      "reranking_enable": False, "top_k": 10}},
            )  # fmt: skip
            assert found.status_code == 200, found.text
            scores.update((r["segment"]["id"], r["score"]) for r in found.json()["records"])
        return scores

    before = len(rerank_calls(upstream))
    by_meaning = searched("semantic_search")
    by_keywords = searched("keyword_search", dataset, gulls, moorings)
    meaning = weighted(1.0, 0.0)
    assert [p["score"] for p in meaning] == sorted(by_meaning.values(), reverse=True)[:3]
    assert all(p["score"] == by_meaning[p["segment_id"]] for p in meaning)
    keywords = weighted(0.0, 1.0)
    assert keywords and keywords[0]["score"] > 0
    assert all(p["score"] == by_keywords.get(p["segment_id"], 0.0) for p in keywords)
    mixed = weighted(0.5, 0.5)
    for p in mixed:
        expected = 0.5 * by_meaning.get(p["segment_id"], 0.0) + 0.5 * by_keywords.get(
            p["segment_id"], 0.0
        )
        assert p["score"] == pytest.approx(expected, abs=2e-6)
    # The keywords-only dataset counts at the keyword weight (it has no meaning to weigh).
    (moored,) = searched("keyword_search", moorings).items()
    assert moored[1] > 0
    found = {
        p["segment_id"]: p["score"]
        for p in weighted(0.5, 0.5, top_k=10)
        if p["dataset_id"] == moorings
    }
    assert found == {moored[0]: pytest.approx(0.5 * moored[1], abs=2e-6)}
    # The app's threshold is on the weighted scores.
    first, second = sorted(by_meaning.values(), reverse=True)[:2]
    (kept,) = weighted(1.0, 0.0, score_threshold_enabled=True, score_threshold=(first + second) / 2)
    assert kept["score"] == first
    assert len(rerank_calls(upstream)) == before  # no model judged any of it


def test_an_apps_reranking_is_checked_when_it_is_configured(
    admin: Admin, kb: httpx.Client, provider: dict[str, Any], dataset: str, gulls: str
) -> None:
    client = admin.client
    app = client.post("/console/api/apps", json={"name": "Checked", "mode": "chat"})
    url = f"/console/api/apps/{app.json()['data']['id']}/model-config"

    def saved(**reranking: Any) -> httpx.Response:
        return client.post(url, json={"dataset_configs": over(dataset, gulls, **reranking)})

    nope = saved(reranking_model={"reranking_provider_name": provider["reference"],
                                  "reranking_model_name": "nope"})  # fmt: skip
    assert_envelope(nope, 400, "invalid_param", "dataset_configs.reranking_model 'nope'")
    assert f"this workspace offers '{MODEL}'" in nope.json()["message"]
    assert_envelope(
        saved(reranking_mode="by-vibes"), 400, "invalid_param", "dataset_configs.reranking_mode"
    )
    assert_envelope(
        saved(reranking_mode="weighted_score",
              weights={"vector_setting": {"vector_weight": 2}}),
        400, "invalid_param", "dataset_configs.weights.vector_setting.vector_weight",
    )  # fmt: skip
    assert_envelope(saved(reranking_enable="yes"), 400, "invalid_param", "reranking_enable")
    # Empty names (Dify's console writes them with reranking off) are no rerank: accepted.
    assert saved(reranking_enable=True, reranking_model={"reranking_provider_name": "",
                 "reranking_model_name": ""}).status_code == 200  # fmt: skip

    # A weighted score compares meaning: datasets on different embedding models cannot share one.
    added = client.post(
        "/console/api/workspaces/current/model-providers",
        json={"name": "Team embeddings", "base_url": provider["base_url"], "api_key": API_KEY,
              "embedding_models": ["fake-embed"]},
    )  # fmt: skip
    assert added.status_code == 201, added.text
    other = kb.post(
        "/v1/datasets",
        json={"name": f"Other model {time.monotonic_ns()}", "indexing_technique": "high_quality",
              "embedding_model": "fake-embed",
              "embedding_model_provider": added.json()["data"]["reference"]},
    )  # fmt: skip
    assert other.status_code == 200, other.text
    mixed = client.post(
        url,
        json={"dataset_configs": over(dataset, other.json()["id"],
                                      reranking_mode="weighted_score")},
    )  # fmt: skip
    assert_envelope(mixed, 400, "invalid_param", "use different embedding models")
    assert saved(reranking_mode="weighted_score").status_code == 200


def test_an_imported_apps_rerank_model_is_kept_when_the_workspace_offers_it(
    admin: Admin, provider: dict[str, Any], dataset: str
) -> None:
    def imported(reranking_model: dict[str, str]) -> dict[str, Any]:
        config = {"retrieval_model": "multiple", "top_k": 2, "reranking_enable": True,
                  "reranking_mode": "reranking_model", "reranking_model": reranking_model,
                  "datasets": {"datasets": [{"dataset": {"enabled": True, "id": dataset}}]}}  # fmt: skip
        content = yaml.safe_dump(
            {
                "version": "0.3.1",
                "kind": "app",
                "app": {"name": "Reranked", "mode": "chat"},
                "model_config": {"pre_prompt": "Answer.", "dataset_configs": config},
            }
        )
        response = admin.client.post(
            "/console/api/apps/imports", json={"mode": "yaml-content", "yaml_content": content}
        )
        assert response.status_code == 200, response.text
        body = dict(response.json())
        stored = admin.client.get(f"/console/api/apps/{body['app_id']}/model-config")
        body["dataset_configs"] = stored.json()["data"]["dataset_configs"]
        return body

    theirs = imported({"reranking_provider_name": "langgenius/cohere/cohere",
                       "reranking_model_name": "rerank-english-v3.0"})  # fmt: skip
    assert theirs["status"] == "completed-with-warnings"
    (warning,) = theirs["warnings"]
    assert "model_config.dataset_configs.reranking_model 'rerank-english-v3.0'" in warning
    assert "Reranking was turned off" in warning
    assert theirs["dataset_configs"]["reranking_enable"] is False
    ours = imported({"reranking_provider_name": provider["reference"],
                     "reranking_model_name": MODEL})  # fmt: skip
    assert (ours["status"], ours["warnings"]) == ("completed", [])
    assert ours["dataset_configs"]["reranking_enable"] is True


def test_a_knowledge_retrieval_nodes_rerank_model_orders_its_passages(
    service_stack: support.Stack,
    admin: Admin,
    upstream: Any,
    provider: dict[str, Any],
    dataset: str,
    gulls: str,
    unkeyed: None,
) -> None:
    document = yaml.safe_load(WORKFLOW.read_text())
    for node in document["workflow"]["graph"]["nodes"]:
        if node["data"]["type"] == "knowledge-retrieval":
            node["data"]["dataset_ids"] = [dataset, gulls]
            node["data"]["multiple_retrieval_config"] = {
                "top_k": 2, "score_threshold": None, "reranking_enable": True,
                "reranking_mode": "reranking_model",
                # (a node names its rerank model {provider, model}, as Dify's does)
                "reranking_model": {"provider": provider["reference"], "model": MODEL},
            }  # fmt: skip
    app = published_app(service_stack, admin, document)
    with app.client:
        answered = run(app, {"question": QUERY}, response_mode="blocking")
    assert answered.status_code == 200, answered.text
    data = answered.json()["data"]
    assert data["status"] == "succeeded", data
    assert [(p["content"], p["metadata"]["score"]) for p in data["outputs"]["passages"]] == [
        (PASSAGES["ferry"], 1.0), (GULLS, round(2 / 3, 6)),
    ]  # fmt: skip


def test_an_imported_nodes_rerank_model_the_workspace_lacks_is_turned_off(
    admin: Admin, dataset: str
) -> None:
    document = yaml.safe_load(WORKFLOW.read_text())
    for node in document["workflow"]["graph"]["nodes"]:
        if node["data"]["type"] == "knowledge-retrieval":
            node["data"]["dataset_ids"] = [dataset]
            node["data"]["multiple_retrieval_config"] = {
                "top_k": 2, "reranking_enable": True, "reranking_mode": "reranking_model",
                "reranking_model": {"provider": "langgenius/cohere/cohere",
                                    "model": "rerank-english-v3.0"},
            }  # fmt: skip
    response = admin.client.post(
        "/console/api/apps/imports",
        json={"mode": "yaml-content", "yaml_content": yaml.safe_dump(document)},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed-with-warnings", body
    assert any(
        "node 'search'" in w and "multiple_retrieval_config.reranking_model 'rerank-english-v3.0'"
        in w and "Reranking was turned off" in w
        for w in body["warnings"]
    ), body["warnings"]  # fmt: skip
    draft = admin.client.get(f"/console/api/apps/{body['app_id']}/workflows/draft").json()
    (node,) = [n for n in draft["graph"]["nodes"] if n["data"]["type"] == "knowledge-retrieval"]
    assert node["data"]["multiple_retrieval_config"]["reranking_enable"] is False
