"""Q&A documents (Dify's `doc_form: qa_model`) on a workspace whose default model provider is the
fake model server (its `fake:qa` model writes one question-and-answer pair per sentence of the
chunk it is sent): each chunk's pairs become the document's segments, the question its content
and the answer its answer, in order; a search compares the query with the questions and gives
the answers with them; a chat's passages hold both. A segment added to such a document needs
its answer; a model that refuses, or answers without pairs, ends the document in `error` with
the reason in words and nothing of it left behind."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import support
from tests.e2e.conftest import Admin, make_admin, service_app
from tests.e2e.test_indexing import wait_indexed

API_KEY = "sk-team-qa"
PROVIDERS = "/console/api/workspaces/current/model-providers"
TEXT = (
    "The ferry to the island leaves from pier four at seven. Tickets are sold on board.\n\n"
    "The lighthouse opens to visitors on Sundays. Its lamp was lit in 1871."
)
RULE = {
    "mode": "custom",
    "rules": {
        "pre_processing_rules": [],
        "segmentation": {"separator": "\n\n", "max_tokens": 60, "chunk_overlap": 0},
    },
}
SENTENCES = [
    "The ferry to the island leaves from pier four at seven.",
    "Tickets are sold on board.",
    "The lighthouse opens to visitors on Sundays.",
    "Its lamp was lit in 1871.",
]
assert_envelope = support.assert_envelope


def question(sentence: str) -> str:
    """The fake's question about a sentence (`tests/fakes/fake_openai.py:qa_pairs`)."""
    return f"What does the text say about {' '.join(sentence.split()[:3])}?"


@pytest.fixture(scope="module")
def admin(service_stack: support.Stack, upstream: Any) -> Iterator[Admin]:
    owner = make_admin(service_stack)
    upstream.reset()
    upstream.control(api_key=API_KEY)
    yield owner
    upstream.reset()
    owner.client.close()


@pytest.fixture(scope="module")
def provider(admin: Admin, upstream: Any) -> dict[str, Any]:
    """The workspace's default provider: its first model writes the pairs."""
    added = admin.client.post(
        PROVIDERS,
        json={"name": "Team QA", "base_url": upstream.base_url, "api_key": API_KEY,
              "models": ["fake:qa"], "is_default": True},
    )  # fmt: skip
    assert added.status_code == 201, added.text
    return dict(added.json()["data"])


@pytest.fixture(scope="module")
def kb(
    service_stack: support.Stack, admin: Admin, provider: dict[str, Any]
) -> Iterator[httpx.Client]:
    created = admin.client.post("/console/api/datasets/api-keys")
    with service_stack.client(created.json()["data"]["token"]) as client:
        yield client


def new_dataset(kb: httpx.Client) -> str:
    made = kb.post(
        "/v1/datasets",
        json={"name": f"Harbour FAQ {time.monotonic_ns()}", "indexing_technique": "high_quality"},
    )
    assert made.status_code == 200, made.text
    return str(made.json()["id"])


def create(kb: httpx.Client, dataset_id: str, **body: Any) -> httpx.Response:
    payload = {"name": "harbour", "text": TEXT, "indexing_technique": "high_quality",
               "doc_form": "qa_model", "doc_language": "English", "process_rule": RULE, **body}  # fmt: skip
    return kb.post(f"/v1/datasets/{dataset_id}/document/create-by-text", json=payload)


def segments_of(kb: httpx.Client, dataset_id: str, document_id: str) -> list[dict[str, Any]]:
    listed = kb.get(f"/v1/datasets/{dataset_id}/documents/{document_id}/segments")
    assert listed.status_code == 200, listed.text
    return list(listed.json()["data"])


@pytest.fixture(scope="module")
def indexed(kb: httpx.Client) -> dict[str, str]:
    dataset_id = new_dataset(kb)
    made = create(kb, dataset_id, doc_language="French")
    assert made.status_code == 200, made.text
    assert made.json()["document"]["doc_form"] == "qa_model"
    final = wait_indexed(kb, dataset_id, made.json()["batch"])[-1]
    assert final["indexing_status"] == "completed", final
    return {"dataset": dataset_id, "document": made.json()["document"]["id"]}


def test_each_chunks_pairs_become_the_documents_segments_in_order(
    kb: httpx.Client, indexed: dict[str, str], upstream: Any
) -> None:
    found = segments_of(kb, indexed["dataset"], indexed["document"])
    assert [(s["content"], s["answer"]) for s in found] == [(question(s), s) for s in SENTENCES]
    assert [s["position"] for s in found] == [1, 2, 3, 4]
    assert all(s["word_count"] == len(s["content"]) + len(s["answer"]) for s in found)
    # One request per chunk, in the document's language, with the chunk's text.
    asked = [r for r in upstream.stats()["log"] if r["model"] == "fake:qa"]
    assert len(asked) == 2
    assert all("Write in French." in r["messages"][0]["content"] for r in asked)
    assert {r["messages"][1]["content"].split("\n")[1] for r in asked} == {
        TEXT.split("\n\n")[0], TEXT.split("\n\n")[1],
    }  # fmt: skip
    document = kb.get(f"/v1/datasets/{indexed['dataset']}/documents/{indexed['document']}")
    assert document.json()["doc_form"] == "qa_model"
    assert document.json()["doc_language"] == "French"


def test_a_search_matches_the_questions_and_gives_their_answers(
    kb: httpx.Client, indexed: dict[str, str]
) -> None:
    found = kb.post(
        f"/v1/datasets/{indexed['dataset']}/retrieve",
        json={"query": "What does the text say about The lighthouse opens?"},
    )
    assert found.status_code == 200, found.text
    best = found.json()["records"][0]["segment"]
    assert (best["content"], best["answer"]) == (question(SENTENCES[2]), SENTENCES[2])


def test_a_chats_passages_hold_the_question_and_its_answer(
    service_stack: support.Stack, admin: Admin, indexed: dict[str, str], upstream: Any
) -> None:
    app = service_app(
        service_stack, admin, mode="chat", pre_prompt="Answer from the passages.",
        dataset_configs={"retrieval_model": "multiple", "top_k": 1,
                         "datasets": {"datasets": [{"dataset": {"enabled": True,
                                                                "id": indexed["dataset"]}}]}},
    )  # fmt: skip
    with app.client:
        answered = app.client.post(
            "/chat-messages",
            json={"inputs": {}, "query": "When is the lighthouse open to visitors?",
                  "user": "lee", "response_mode": "blocking", "auto_generate_name": False},
        )  # fmt: skip
    assert answered.status_code == 200, answered.text
    (used,) = answered.json()["metadata"]["retriever_resources"]
    assert used["content"] == f"question: {question(SENTENCES[2])}\nanswer: {SENTENCES[2]}"
    prompt = upstream.stats()["log"][-1]["messages"]
    assert f"answer: {SENTENCES[2]}" in prompt[0]["content"]


def test_a_segment_added_needs_its_answer(kb: httpx.Client, indexed: dict[str, str]) -> None:
    url = f"/v1/datasets/{indexed['dataset']}/documents/{indexed['document']}/segments"
    before = segments_of(kb, indexed["dataset"], indexed["document"])
    missing = kb.post(url, json={"segments": [{"content": "Are dogs allowed on the ferry?"}]})
    assert_envelope(missing, 400, "invalid_param", "segments[0].answer is required")
    assert segments_of(kb, indexed["dataset"], indexed["document"]) == before
    added = kb.post(
        url,
        json={"segments": [{"content": "Are dogs allowed on the ferry?",
                            "answer": "Yes, on a lead."}]},
    )  # fmt: skip
    assert added.status_code == 200, added.text
    (made,) = added.json()["data"]
    assert (made["answer"], made["word_count"]) == ("Yes, on a lead.", 30 + 15)
    found = kb.post(
        f"/v1/datasets/{indexed['dataset']}/retrieve",
        json={"query": "Are dogs allowed on the ferry?"},
    )
    assert found.json()["records"][0]["segment"]["answer"] == "Yes, on a lead."
    # A change may not empty the answer; a new one counts its words.
    emptied = kb.post(f"{url}/{made['id']}", json={"segment": {"answer": "  "}})
    assert_envelope(emptied, 400, "invalid_param", "segment.answer is required")
    changed = kb.post(f"{url}/{made['id']}", json={"segment": {"answer": "Yes."}})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["data"]["answer"], changed.json()["data"]["word_count"]) == (
        "Yes.", 30 + 4,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ("fake:status-400", "The chat model that writes the questions and answers failed"),
        ("fake-plain", "wrote no question-and-answer pairs"),
    ],
)
def test_a_model_that_refuses_or_writes_no_pairs_ends_the_document_in_error(
    admin: Admin, kb: httpx.Client, provider: dict[str, Any], model: str, reason: str
) -> None:
    switched = admin.client.put(f"{PROVIDERS}/{provider['id']}", json={"models": [model]})
    assert switched.status_code == 200, switched.text
    try:
        dataset_id = new_dataset(kb)
        made = create(kb, dataset_id)
        final = wait_indexed(kb, dataset_id, made.json()["batch"])[-1]
    finally:
        admin.client.put(f"{PROVIDERS}/{provider['id']}", json={"models": ["fake:qa"]})
    assert final["indexing_status"] == "error", final
    assert reason in final["error"], final
    document_id = made.json()["document"]["id"]
    assert segments_of(kb, dataset_id, document_id) == []


def test_a_model_down_for_a_moment_is_retried_and_the_document_completes(
    admin: Admin, kb: httpx.Client, provider: dict[str, Any]
) -> None:
    """The chat model answers 503 (the workspace's model switched to the fake's failing one):
    the document waits with the reason shown and retries with backoff; once the model is
    back, it completes with every pair."""
    url = f"{PROVIDERS}/{provider['id']}"
    assert admin.client.put(url, json={"models": ["fake:status-503"]}).status_code == 200
    try:
        dataset_id = new_dataset(kb)
        made = create(kb, dataset_id)
        batch = made.json()["batch"]

        def waiting() -> dict[str, Any] | None:
            item = kb.get(f"/v1/datasets/{dataset_id}/documents/{batch}/indexing-status")
            found = dict(item.json()["data"][0])
            return found if found.get("delay_reason") else None

        retrying = support.wait_for(waiting, timeout=30, interval=0.05, what="a retry")
        assert "503" in retrying["delay_reason"], retrying
        assert retrying["indexing_status"] == "splitting", retrying
    finally:
        assert admin.client.put(url, json={"models": ["fake:qa"]}).status_code == 200
    final = wait_indexed(kb, dataset_id, batch)[-1]
    assert final["indexing_status"] == "completed", final
    document_id = made.json()["document"]["id"]
    assert [s["answer"] for s in segments_of(kb, dataset_id, document_id)] == SENTENCES


def test_an_answer_given_for_a_text_documents_segment_is_ignored(kb: httpx.Client) -> None:
    """As in Dify: only a Q&A document's segments have answers."""
    dataset_id = new_dataset(kb)
    made = kb.post(
        f"/v1/datasets/{dataset_id}/document/create-by-text",
        json={"name": "plain", "text": TEXT, "indexing_technique": "high_quality",
              "process_rule": {"mode": "automatic"}},
    )  # fmt: skip
    assert wait_indexed(kb, dataset_id, made.json()["batch"])[-1]["indexing_status"] == "completed"
    url = f"/v1/datasets/{dataset_id}/documents/{made.json()['document']['id']}/segments"
    added = kb.post(url, json={"segments": [{"content": "Dogs ride free.", "answer": "Yes."}]})
    assert added.status_code == 200, added.text
    (segment,) = added.json()["data"]
    assert (segment["answer"], segment["word_count"]) == (None, len("Dogs ride free."))
