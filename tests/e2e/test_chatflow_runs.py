"""Chatflow (`advanced-chat`) apps over `POST /v1/chat-messages`: each turn runs the published
workflow; its answer node streams as `message` events, the turn ends with `message_end` and
`workflow_finished`; the conversation's earlier turns reach the model (memory) and its
variables persist across turns, readable and settable through the Service API."""

from __future__ import annotations

from typing import Any

import pytest

from tests import support
from tests.e2e.conftest import Admin, ServiceApp
from tests.e2e.sse import frames
from tests.e2e.test_workflow_runs import workflow_app


@pytest.fixture
def chatflow(service_stack: support.Stack, service_admin: Admin, upstream: Any) -> ServiceApp:
    upstream.reset()
    return workflow_app(service_stack, service_admin, "chatflow_memory.yml")


def turn(app: ServiceApp, query: str, conversation_id: str = "") -> list[dict[str, Any]]:
    body = {
        "inputs": {},
        "query": query,
        "user": "cf-user",
        "response_mode": "streaming",
        "conversation_id": conversation_id,
    }
    with app.client.stream("POST", "/chat-messages", json=body) as response:
        assert response.status_code == 200, response.read()
        return [frame.data for frame in frames(response) if frame.event != "ping"]


def test_a_turn_streams_its_answer_and_ends_with_message_end_then_workflow_finished(
    chatflow: ServiceApp,
) -> None:
    events = turn(chatflow, "hello there")
    names = [e["event"] for e in events]
    assert names[0] == "workflow_started"
    assert names[-2:] == ["message_end", "workflow_finished"]
    answer = "".join(e["answer"] for e in events if e["event"] == "message")
    assert answer == "Bot: You said: hello there"
    first = events[0]
    for event in events:
        assert event["conversation_id"] == first["conversation_id"]
        assert event["message_id"] == first["message_id"]
        assert event["task_id"] == first["task_id"]
    # The model's pieces went out while it streamed: before the answer node started.
    answer_started = next(
        i for i, e in enumerate(events)
        if e["event"] == "node_started" and e["data"]["node_id"] == "answer"
    )  # fmt: skip
    pieces = [i for i, e in enumerate(events) if e["event"] == "message"]
    assert pieces[1] < answer_started
    assert events[-2]["metadata"]["usage"]["total_tokens"] > 0
    assert events[-1]["data"]["status"] == "succeeded"


def test_a_blocking_turn_answers_the_chat_shape(chatflow: ServiceApp) -> None:
    response = chatflow.client.post(
        "/chat-messages", json={"inputs": {}, "query": "hi", "user": "cf-user"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "advanced-chat" and body["answer"] == "Bot: You said: hi"
    assert body["conversation_id"] and body["message_id"] == body["id"]
    listed = chatflow.client.get(
        "/messages", params={"user": "cf-user", "conversation_id": body["conversation_id"]}
    ).json()["data"]
    assert [(m["query"], m["answer"]) for m in listed] == [("hi", "Bot: You said: hi")]


def test_memory_and_conversation_variables_carry_across_turns(
    chatflow: ServiceApp, upstream: Any
) -> None:
    first = turn(chatflow, "tell me about owls")
    conversation_id = first[0]["conversation_id"]
    turn(chatflow, "and about bats", conversation_id)
    prompts = [record["messages"] for record in upstream.stats()["log"]]
    second = prompts[-1]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[0]["content"] == "Mood: calm"
    assert second[1]["content"] == "tell me about owls"
    assert second[2]["content"] == "Bot: You said: tell me about owls"
    assert second[3]["content"] == "and about bats"
    listed = chatflow.client.get(
        f"/conversations/{conversation_id}/variables", params={"user": "cf-user"}
    )
    assert listed.status_code == 200, listed.text
    variables = {v["name"]: v for v in listed.json()["data"]}
    assert variables["topics"]["value"] == ["tell me about owls", "and about bats"]
    assert variables["topics"]["id"] == "var-topics"
    assert variables["mood"]["value"] == "calm"


def test_a_conversation_variable_is_set_through_the_api_and_seen_by_the_next_turn(
    chatflow: ServiceApp, upstream: Any
) -> None:
    conversation_id = turn(chatflow, "first")[0]["conversation_id"]
    path = f"/conversations/{conversation_id}/variables/var-mood"
    wrong = chatflow.client.put(path, json={"user": "cf-user", "value": 3})
    assert wrong.status_code == 400 and "holds string, not number" in wrong.json()["message"]
    assert wrong.json()["code"] == "bad_request"  # Dify's code for a type mismatch
    unknown = chatflow.client.put(f"{path}-x", json={"user": "cf-user", "value": "x"})
    assert unknown.status_code == 404
    assert unknown.json()["message"] == "Conversation Variable Not Exists."
    updated = chatflow.client.put(path, json={"user": "cf-user", "value": "grumpy"})
    assert updated.status_code == 200, updated.text
    assert updated.json()["value"] == "grumpy"
    # The SDK once sent PATCH: the same route.
    patched = chatflow.client.patch(path, json={"user": "cf-user", "value": "sunny"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["value"] == "sunny"
    chatflow.client.put(path, json={"user": "cf-user", "value": "grumpy"})
    turn(chatflow, "second", conversation_id)
    assert upstream.stats()["log"][-1]["messages"][0]["content"] == "Mood: grumpy"
    others = chatflow.client.get(
        f"/conversations/{conversation_id}/variables", params={"user": "someone-else"}
    )
    assert others.status_code == 404


def test_a_failing_turn_ends_with_workflow_finished_then_an_error(
    service_stack: support.Stack, service_admin: Admin
) -> None:
    failing = workflow_app(service_stack, service_admin, "chatflow_failing.yml")
    fine = turn(failing, "all good")
    assert "".join(e["answer"] for e in fine if e["event"] == "message") == "Echo: ALL GOOD"
    events = turn(failing, "please fail")
    assert [e["event"] for e in events][-2:] == ["workflow_finished", "error"]
    assert events[-2]["data"]["status"] == "failed"
    error = events[-1]
    assert error["code"] == "invalid_param" and error["status"] == 400
    assert error["message"].startswith("Run failed: ") and "asked for it" in error["message"]
    assert "task_id" not in error and not [e for e in events if e["event"] == "message_end"]
    blocking = failing.client.post(
        "/chat-messages", json={"inputs": {}, "query": "fail again", "user": "cf-user"}
    )
    assert blocking.status_code == 400 and "asked for it" in blocking.json()["message"]
    messages = failing.client.get(
        "/messages",
        params={"user": "cf-user", "conversation_id": events[0]["conversation_id"]},
    ).json()["data"]
    assert messages[-1]["status"] == "error"
    assert "asked for it" in messages[-1]["error"]
