"""Knowledge-backed chat and completion over HTTP: an app whose model config names a dataset
(indexed for real by the local embedding model) searches it before it asks the model; the
passages reach the model's prompt (the fake upstream's request log), the run reports them as
`retriever_resources` in the blocking reply, in the stream's `message_end` and in the message
list, and each passage used counts a hit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests import support
from tests.e2e.conftest import Admin, ServiceApp, service_app
from tests.e2e.sse import frames
from tests.e2e.test_indexing import by_text, segments, wait_indexed

PASSAGE = (
    "The lighthouse keeper of Skerry Point writes the name of every ship that passes the "
    "northern reef into a leather logbook."
)
OTHER = (
    "Sourdough bread needs flour, water, salt and a lively starter; bake it at 230 degrees "
    "in a covered pot for forty minutes."
)
QUESTION = "Who records the ships passing the northern reef?"
NO_NAMING = {"auto_generate_name": False}
RESOURCE_KEYS = {
    "position", "dataset_id", "dataset_name", "document_id", "document_name",
    "data_source_type", "segment_id", "retriever_from", "score", "hit_count", "word_count",
    "segment_position", "index_node_hash", "content", "created_at",
}  # fmt: skip


@pytest.fixture(scope="module")
def knowledge(service_stack: support.Stack, service_admin: Admin) -> dict[str, Any]:
    """A dataset of two documents, indexed: one holds the passage, one does not."""
    key = service_admin.client.post("/console/api/datasets/api-keys").json()["data"]["token"]
    with service_stack.client(key) as kb:
        made = kb.post("/v1/datasets", json={"name": f"Harbour {time.monotonic_ns()}"})
        assert made.status_code == 200, made.text
        dataset = dict(made.json())
        documents = {}
        for name, text in (("lighthouse", PASSAGE), ("bread", OTHER)):
            created = by_text(kb, dataset["id"], name=name, text=text)
            ended = wait_indexed(kb, dataset["id"], created["batch"])[-1]
            assert ended["indexing_status"] == "completed", ended
            documents[name] = created["document"]["id"]
        (segment,) = segments(kb, dataset["id"], documents["lighthouse"])
        return {"dataset": dataset, "documents": documents, "segment": segment, "key": key}


def uses(dataset_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "retrieval_model": "multiple",
        "datasets": {"datasets": [{"dataset": {"enabled": True, "id": dataset_id}}]},
        "top_k": 2,
        **extra,
    }


@pytest.fixture
def kb_app(
    service_stack: support.Stack, service_admin: Admin, upstream: Any, knowledge: dict[str, Any]
) -> Iterator[ServiceApp]:
    upstream.reset()
    found = service_app(
        service_stack,
        service_admin,
        mode="chat",
        pre_prompt="You answer questions about the harbour.",
        dataset_configs=uses(knowledge["dataset"]["id"]),
    )
    yield found
    found.client.close()


def system_prompt(upstream: Any) -> str:
    log = upstream.stats()["log"]
    messages = log[-1]["messages"]
    assert messages[0]["role"] == "system", messages
    return str(messages[0]["content"])


def hits(service_stack: support.Stack, knowledge: dict[str, Any]) -> int:
    with service_stack.client(knowledge["key"]) as kb:
        (segment,) = segments(kb, knowledge["dataset"]["id"], knowledge["documents"]["lighthouse"])
    return int(segment["hit_count"])


def check_resources(found: list[dict[str, Any]], knowledge: dict[str, Any]) -> None:
    assert found, "no retriever_resources"
    first = found[0]
    assert set(first) >= RESOURCE_KEYS, set(first) ^ RESOURCE_KEYS
    assert first["position"] == 1
    assert first["dataset_id"] == knowledge["dataset"]["id"]
    assert first["dataset_name"] == knowledge["dataset"]["name"]
    assert first["document_id"] == knowledge["documents"]["lighthouse"]
    assert first["document_name"] == "lighthouse.txt"
    assert first["segment_id"] == knowledge["segment"]["id"]
    assert first["content"] == PASSAGE
    assert 0 < first["score"] <= 1
    scores = [item["score"] for item in found]
    assert scores == sorted(scores, reverse=True)


class TestChat:
    def test_blocking_answers_from_the_dataset_and_lists_the_passages(
        self,
        kb_app: ServiceApp,
        upstream: Any,
        knowledge: dict[str, Any],
        service_stack: support.Stack,
    ) -> None:
        before = hits(service_stack, knowledge)
        response = kb_app.client.post(
            "/chat-messages",
            json={"inputs": {}, "query": QUESTION, "user": "alice", "response_mode": "blocking",
                  **NO_NAMING},
        )  # fmt: skip
        assert response.status_code == 200, response.text
        body = response.json()
        check_resources(body["metadata"]["retriever_resources"], knowledge)
        prompt = system_prompt(upstream)
        assert PASSAGE in prompt
        assert prompt.index(PASSAGE) < prompt.index("You answer questions about the harbour.")

        listed = kb_app.client.get(
            "/messages", params={"user": "alice", "conversation_id": body["conversation_id"]}
        )
        assert listed.status_code == 200, listed.text
        (message,) = listed.json()["data"]
        check_resources(message["retriever_resources"], knowledge)
        assert message["retriever_resources"][0]["message_id"] == body["message_id"]
        # The hit is counted after the message is stored (a signal's handler).
        deadline = time.monotonic() + 10
        while hits(service_stack, knowledge) < before + 1:
            assert time.monotonic() < deadline, "hit_count did not grow"
            time.sleep(0.1)

    def test_the_stream_ends_with_the_passages_and_the_replay_keeps_them(
        self, kb_app: ServiceApp, upstream: Any, knowledge: dict[str, Any]
    ) -> None:
        body = {"inputs": {}, "query": QUESTION, "user": "bob", "response_mode": "streaming",
                **NO_NAMING}  # fmt: skip
        with kb_app.client.stream("POST", "/chat-messages", json=body) as response:
            assert response.status_code == 200, response.read()
            items = [f for f in frames(response) if f.event != "ping"]
        end = items[-1]
        assert end.event == "message_end", items[-3:]
        check_resources(end.data["metadata"]["retriever_resources"], knowledge)
        assert PASSAGE in system_prompt(upstream)
        # The run's events again, from the log (a client that reconnects after the end).
        replay = kb_app.client.get(
            f"/chat-messages/{end.data['task_id']}/events", params={"user": "bob"}
        )
        assert replay.status_code == 200, replay.text
        assert '"retriever_resources":[{' in replay.text.replace(" ", "")

    def test_a_threshold_above_every_score_leaves_the_prompt_without_context(
        self, service_stack: support.Stack, service_admin: Admin, upstream: Any,
        knowledge: dict[str, Any],
    ) -> None:  # fmt: skip
        upstream.reset()
        strict = service_app(
            service_stack,
            service_admin,
            mode="chat",
            pre_prompt="Be brief.",
            dataset_configs=uses(
                knowledge["dataset"]["id"], score_threshold_enabled=True, score_threshold=0.99
            ),
        )
        with strict.client:
            response = strict.client.post(
                "/chat-messages",
                json={"inputs": {}, "query": QUESTION, "user": "carol",
                      "response_mode": "blocking", **NO_NAMING},
            )  # fmt: skip
        assert response.status_code == 200, response.text
        assert response.json()["metadata"]["retriever_resources"] == []
        assert system_prompt(upstream) == "Be brief."

    def test_resources_hidden_when_the_app_turns_them_off_but_the_context_is_used(
        self, service_stack: support.Stack, service_admin: Admin, upstream: Any,
        knowledge: dict[str, Any],
    ) -> None:  # fmt: skip
        upstream.reset()
        quiet = service_app(
            service_stack,
            service_admin,
            mode="chat",
            dataset_configs=uses(knowledge["dataset"]["id"]),
            retriever_resource={"enabled": False},
        )
        with quiet.client:
            response = quiet.client.post(
                "/chat-messages",
                json={"inputs": {}, "query": QUESTION, "user": "dan",
                      "response_mode": "blocking", **NO_NAMING},
            )  # fmt: skip
        assert response.status_code == 200, response.text
        assert response.json()["metadata"]["retriever_resources"] == []
        assert PASSAGE in system_prompt(upstream)

    def test_the_apps_metadata_filter_narrows_the_passages(
        self, service_stack: support.Stack, service_admin: Admin, upstream: Any,
        knowledge: dict[str, Any],
    ) -> None:  # fmt: skip
        dataset_id = knowledge["dataset"]["id"]
        with service_stack.client(knowledge["key"]) as kb:
            made = kb.post(
                f"/v1/datasets/{dataset_id}/metadata",
                json={"name": f"topic{time.monotonic_ns()}", "type": "string"},
            )
            assert made.status_code == 201, made.text
            field = made.json()
            tagged = kb.post(
                f"/v1/datasets/{dataset_id}/documents/metadata",
                json={
                    "operation_data": [
                        {
                            "document_id": knowledge["documents"]["bread"],
                            "metadata_list": [{"id": field["id"], "value": "food"}],
                        }
                    ]
                },
            )
            assert tagged.status_code == 200, tagged.text
        upstream.reset()
        food_only = service_app(
            service_stack,
            service_admin,
            mode="chat",
            dataset_configs=uses(
                dataset_id,
                metadata_filtering_mode="manual",
                metadata_filtering_conditions={"logical_operator": "and", "conditions": [
                    {"name": field["name"], "comparison_operator": "is", "value": "food"}]},
            ),
        )  # fmt: skip
        with food_only.client:
            response = food_only.client.post(
                "/chat-messages",
                json={"inputs": {}, "query": QUESTION, "user": "fay",
                      "response_mode": "blocking", **NO_NAMING},
            )  # fmt: skip
        assert response.status_code == 200, response.text
        found = response.json()["metadata"]["retriever_resources"]
        assert [item["document_id"] for item in found] == [knowledge["documents"]["bread"]]
        assert PASSAGE not in system_prompt(upstream)


class TestCompletion:
    def test_the_query_variable_is_what_is_searched(
        self, service_stack: support.Stack, service_admin: Admin, upstream: Any,
        knowledge: dict[str, Any],
    ) -> None:  # fmt: skip
        upstream.reset()
        app = service_app(
            service_stack,
            service_admin,
            mode="completion",
            pre_prompt="Facts:\n{{#context#}}\n\nAnswer: {{question}}",
            user_input_form=[
                {"paragraph": {"label": "Q", "variable": "question", "required": True}}
            ],
            dataset_query_variable="question",
            dataset_configs=uses(knowledge["dataset"]["id"], top_k=1),
        )
        with app.client:
            response = app.client.post(
                "/completion-messages",
                json={"inputs": {"question": QUESTION}, "user": "erin",
                      "response_mode": "blocking"},
            )  # fmt: skip
        assert response.status_code == 200, response.text
        found = response.json()["metadata"]["retriever_resources"]
        assert [item["segment_id"] for item in found] == [knowledge["segment"]["id"]]
        (message,) = upstream.stats()["log"][-1]["messages"]
        assert message["content"] == f"Facts:\n{PASSAGE}\n\nAnswer: {QUESTION}"


class TestParentChild:
    def test_a_childs_match_brings_its_whole_parent_into_the_prompt(
        self, service_stack: support.Stack, service_admin: Admin, upstream: Any
    ) -> None:
        """A parent-child dataset: the question matches one child line; the run's passage
        (the prompt and `retriever_resources`) is the line's whole parent paragraph."""
        lighthouse = PASSAGE + "\nThe logbook is kept in a brass box by the lamp room door."
        text = f"{OTHER}\n\n{lighthouse}"
        key = service_admin.client.post("/console/api/datasets/api-keys").json()["data"]["token"]
        with service_stack.client(key) as kb:
            made = kb.post("/v1/datasets", json={"name": f"Parents {time.monotonic_ns()}"})
            dataset_id = made.json()["id"]
            created = by_text(
                kb, dataset_id, name="coast", text=text, doc_form="hierarchical_model",
                process_rule={"mode": "hierarchical"},
            )  # fmt: skip
            ended = wait_indexed(kb, dataset_id, created["batch"])[-1]
            assert ended["indexing_status"] == "completed", ended
            parent = segments(kb, dataset_id, created["document"]["id"])[1]
            assert parent["content"] == lighthouse
        upstream.reset()
        app = service_app(
            service_stack, service_admin, mode="chat", pre_prompt="You answer questions.",
            dataset_configs=uses(dataset_id, top_k=1),
        )  # fmt: skip
        with app.client:
            response = app.client.post(
                "/chat-messages",
                json={"inputs": {}, "query": "Where is the logbook kept?", "user": "pat",
                      "response_mode": "blocking", **NO_NAMING},
            )  # fmt: skip
        assert response.status_code == 200, response.text
        (found,) = response.json()["metadata"]["retriever_resources"]
        assert found["segment_id"] == parent["id"]
        assert found["content"] == lighthouse
        assert lighthouse in system_prompt(upstream)
        assert OTHER not in system_prompt(upstream)
