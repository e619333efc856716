"""Dify's official Python SDK (`dify-client` 0.1.10, on `requests`) against a running server:
every method the SDK has, unchanged, with the JSON (or SSE) each call gets back."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any, TypeVar

import httpx
import pytest
import requests
from dify_client import ChatClient, CompletionClient, DifyClient

from tests.e2e.conftest import Admin, ServiceApp, service_app
from tests.support import Stack, wait_for

USER = "sdk-user"
USAGE_FIELDS = {
    "prompt_tokens",
    "prompt_unit_price",
    "prompt_price_unit",
    "prompt_price",
    "completion_tokens",
    "completion_unit_price",
    "completion_price_unit",
    "completion_price",
    "total_tokens",
    "total_price",
    "currency",
    "latency",
}
CONVERSATION_FIELDS = {"id", "name", "inputs", "status", "introduction", "created_at", "updated_at"}
Client = TypeVar("Client", bound=DifyClient)


def sdk(cls: type[Client], app: ServiceApp, key: str | None = None) -> Client:
    """An SDK client aimed at the test server (0.1.10 hard-codes api.dify.ai)."""
    client = cls(key or app.key)
    client.base_url = app.stack.base_url + "/v1"
    return client


def ok_json(response: requests.Response, status: int = 200) -> dict[str, Any]:
    with response:
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/json")
        body: dict[str, Any] = response.json()
    return body


def error_json(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    """What an SDK caller sees on failure: JSON with `message` (the 0.1.12 SDK reads it)."""
    with response:
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message", "status"}, body
    assert (body["code"], body["status"]) == (code, status), body
    return body


def sse_events(response: requests.Response) -> list[dict[str, Any]]:
    """The stream as an SDK caller reads it: `iter_lines()`, keeping the `data:` lines."""
    with response:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/event-stream")
        events = []
        for line in response.iter_lines():
            if line.startswith(b"data:"):
                events.append(json.loads(line[len(b"data:") :].strip()))
    return events


def wait_named(client: ChatClient, conversation_ids: set[str]) -> None:
    """Wait for the background naming of new conversations (the SDK always asks for it)."""

    def named() -> bool:
        listed = ok_json(client.get_conversations(USER, limit=100))["data"]
        names = {c["id"]: c["name"] for c in listed}
        return all(names.get(i, "New conversation") != "New conversation" for i in conversation_ids)

    wait_for(named, timeout=20, interval=0.1, what="the generated conversation names")


def answer_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["answer"] for e in events if e["event"] == "message")


def assert_message_stream(events: list[dict[str, Any]], *, conversation: bool) -> None:
    """message×N then message_end, one task / message / creation time throughout."""
    names = [e["event"] for e in events]
    assert names[-1] == "message_end", names
    assert set(names[:-1]) == {"message"}, names
    assert len(names) >= 3, names  # the fake answers one word per chunk
    for key in ("task_id", "message_id", "created_at"):
        assert len({e[key] for e in events}) == 1, key
    assert all(e["id"] == e["message_id"] for e in events)
    if conversation:
        assert len({e["conversation_id"] for e in events}) == 1
        assert uuid.UUID(events[0]["conversation_id"])
    else:
        assert not any("conversation_id" in e for e in events)
    assert set(events[-1]["metadata"]["usage"]) >= USAGE_FIELDS


@pytest.fixture
def chat_client(chat_app: ServiceApp) -> ChatClient:
    return sdk(ChatClient, chat_app)


@pytest.fixture
def completion_client(completion_app: ServiceApp) -> CompletionClient:
    return sdk(CompletionClient, completion_app)


@pytest.fixture
def failing_completion_app(service_stack: Stack, service_admin: Admin) -> Iterator[ServiceApp]:
    """A completion app whose model the fake upstream always answers with HTTP 500."""
    app = service_app(
        service_stack,
        service_admin,
        mode="completion",
        pre_prompt="Say {{text}}",
        model={"name": "fake:status-500"},
    )
    yield app
    app.client.close()


class TestChatClient:
    def test_blocking_chat(self, chat_client: ChatClient) -> None:
        body = ok_json(chat_client.create_chat_message({}, "Hello from the SDK", USER))
        assert body["event"] == "message"
        assert body["answer"] == "You said: Hello from the SDK"
        assert body["mode"] == "chat"
        assert body["id"] == body["message_id"]
        assert uuid.UUID(body["conversation_id"]) and uuid.UUID(body["task_id"])
        assert isinstance(body["created_at"], int)
        assert set(body["metadata"]["usage"]) >= USAGE_FIELDS
        assert body["metadata"]["retriever_resources"] == []

    def test_streaming_chat(self, chat_client: ChatClient) -> None:
        events = sse_events(
            chat_client.create_chat_message(
                {}, "Stream this answer", USER, response_mode="streaming"
            )
        )
        assert_message_stream(events, conversation=True)
        assert answer_of(events) == "You said: Stream this answer"

    def test_streamed_turn_is_stored_like_a_blocking_one(self, chat_client: ChatClient) -> None:
        events = sse_events(
            chat_client.create_chat_message({}, "Remember me", USER, response_mode="streaming")
        )
        conversation_id, message_id = events[0]["conversation_id"], events[0]["message_id"]
        page = ok_json(chat_client.get_conversation_messages(USER, conversation_id))
        [message] = page["data"]
        assert (message["id"], message["query"], message["answer"]) == (
            message_id,
            "Remember me",
            "You said: Remember me",
        )

    def test_continuing_a_conversation_and_reading_its_messages(
        self, chat_client: ChatClient
    ) -> None:
        first = ok_json(chat_client.create_chat_message({}, "first", USER))
        conversation_id = first["conversation_id"]
        second = ok_json(
            chat_client.create_chat_message({}, "second", USER, conversation_id=conversation_id)
        )
        third_events = sse_events(
            chat_client.create_chat_message(
                {}, "third", USER, response_mode="streaming", conversation_id=conversation_id
            )
        )
        assert second["conversation_id"] == conversation_id
        assert third_events[0]["conversation_id"] == conversation_id

        everything = ok_json(chat_client.get_conversation_messages(USER, conversation_id))
        assert everything["has_more"] is False
        assert [m["query"] for m in everything["data"]] == ["first", "second", "third"]

        latest = ok_json(chat_client.get_conversation_messages(USER, conversation_id, limit=2))
        assert latest["limit"] == 2 and latest["has_more"] is True
        assert [m["query"] for m in latest["data"]] == ["second", "third"]
        older = ok_json(
            chat_client.get_conversation_messages(
                USER, conversation_id, first_id=latest["data"][0]["id"], limit=2
            )
        )
        assert [m["id"] for m in older["data"]] == [first["message_id"]]
        assert older["has_more"] is False

    def test_messages_without_a_conversation_are_refused(self, chat_client: ChatClient) -> None:
        # 0.1.10 leaves an absent conversation_id out; Dify's MessageListQuery requires it.
        ok_json(chat_client.create_chat_message({}, "hi", USER))
        error = error_json(chat_client.get_conversation_messages(USER), 400, "invalid_param")
        assert error["message"] == "conversation_id is required"

    def test_get_conversations(self, chat_client: ChatClient) -> None:
        older = ok_json(chat_client.create_chat_message({}, "older", USER))["conversation_id"]
        newer = ok_json(chat_client.create_chat_message({}, "newer", USER))["conversation_id"]
        # 0.1.10 cannot turn off the background naming, which touches `updated_at` (the default
        # sort key): let it finish so that the pages below are stable.
        wait_named(chat_client, {older, newer})

        page = ok_json(chat_client.get_conversations(USER))
        assert page["limit"] == 20 and page["has_more"] is False
        assert {c["id"] for c in page["data"]} == {older, newer}
        assert all(c["name"] != "New conversation" for c in page["data"])
        assert set(page["data"][0]) >= CONVERSATION_FIELDS
        updated = [c["updated_at"] for c in page["data"]]
        assert updated == sorted(updated, reverse=True)

        first = ok_json(chat_client.get_conversations(USER, limit=1))
        assert first["limit"] == 1 and first["has_more"] is True
        assert [c["id"] for c in first["data"]] == [page["data"][0]["id"]]
        rest = ok_json(chat_client.get_conversations(USER, last_id=first["data"][0]["id"], limit=1))
        assert rest["has_more"] is False
        assert [c["id"] for c in rest["data"]] == [page["data"][1]["id"]]

        pinned = ok_json(chat_client.get_conversations(USER, pinned=True))  # accepted, ignored
        assert len(pinned["data"]) == 2
        assert ok_json(chat_client.get_conversations("someone-else"))["data"] == []

    def test_rename_conversation(self, chat_client: ChatClient) -> None:
        conversation_id = ok_json(chat_client.create_chat_message({}, "name me", USER))[
            "conversation_id"
        ]
        wait_named(chat_client, {conversation_id})  # so that it cannot rename it after us
        body = ok_json(chat_client.rename_conversation(conversation_id, "Renamed by SDK", USER))
        assert (body["id"], body["name"]) == (conversation_id, "Renamed by SDK")
        listed = ok_json(chat_client.get_conversations(USER))["data"]
        assert [(c["id"], c["name"]) for c in listed] == [(conversation_id, "Renamed by SDK")]

    def test_rename_conversation_without_a_name(self, chat_client: ChatClient) -> None:
        conversation_id = ok_json(chat_client.create_chat_message({}, "name me", USER))[
            "conversation_id"
        ]
        body = error_json(
            chat_client.rename_conversation(conversation_id, "", USER), 400, "invalid_param"
        )
        assert body["message"] == "name is required when auto_generate is false"
        unknown = error_json(
            chat_client.rename_conversation(str(uuid.uuid4()), "x", USER), 404, "not_found"
        )
        assert unknown["message"] == "Conversation Not Exists."

    def test_message_feedback(self, chat_client: ChatClient) -> None:
        sent = ok_json(chat_client.create_chat_message({}, "rate this", USER))
        message_id, conversation_id = sent["message_id"], sent["conversation_id"]

        def feedback() -> Any:
            [message] = ok_json(chat_client.get_conversation_messages(USER, conversation_id))[
                "data"
            ]
            return message["feedback"]

        assert ok_json(chat_client.message_feedback(message_id, "like", USER)) == {
            "result": "success"
        }
        assert feedback() == {"rating": "like"}
        assert ok_json(chat_client.message_feedback(message_id, "dislike", USER)) == {
            "result": "success"
        }
        assert feedback() == {"rating": "dislike"}
        assert ok_json(chat_client.message_feedback(message_id, None, USER)) == {
            "result": "success"
        }
        assert feedback() is None
        error_json(chat_client.message_feedback(message_id, None, USER), 400, "invalid_param")
        missing = error_json(
            chat_client.message_feedback(str(uuid.uuid4()), "like", USER), 404, "not_found"
        )
        assert missing["message"] == "Message Not Exists."

    def test_errors_come_back_as_json(self, chat_app: ServiceApp, chat_client: ChatClient) -> None:
        no_query = error_json(chat_client.create_chat_message({}, "", USER), 400, "invalid_param")
        assert no_query["message"] == "query is required"
        no_user = error_json(chat_client.create_chat_message({}, "hi", ""), 400, "invalid_param")
        assert no_user["message"] == "Arg user must be provided."
        gone = error_json(
            chat_client.create_chat_message({}, "hi", USER, conversation_id=str(uuid.uuid4())),
            404,
            "not_found",
        )
        assert gone["message"] == "Conversation Not Exists."
        streaming = error_json(
            chat_client.create_chat_message({}, "", USER, response_mode="streaming"),
            400,
            "invalid_param",
        )
        assert streaming["message"] == "query is required"

        stranger = sdk(ChatClient, chat_app, key="app-" + "x" * 24)
        with stranger.create_chat_message({}, "hi", USER) as response:
            assert response.headers["www-authenticate"] == 'Bearer realm="api"'
        denied = error_json(stranger.get_conversations(USER), 401, "unauthorized")
        assert denied["message"] == "Access token is invalid"

    def test_chat_route_of_a_completion_app(self, completion_app: ServiceApp) -> None:
        client = sdk(ChatClient, completion_app)
        error_json(client.create_chat_message({"text": "x"}, "hi", USER), 400, "not_chat_app")


class TestCompletionClient:
    def test_blocking_completion(self, completion_client: CompletionClient) -> None:
        body = ok_json(
            completion_client.create_completion_message({"text": "bonjour"}, "blocking", USER)
        )
        assert body["event"] == "message"
        assert body["mode"] == "completion"
        assert body["answer"] == "You said: Translate to French: bonjour"
        assert body["id"] == body["message_id"]
        assert "conversation_id" not in body
        assert isinstance(body["created_at"], int)
        assert set(body["metadata"]["usage"]) >= USAGE_FIELDS

    def test_streaming_completion(self, completion_client: CompletionClient) -> None:
        events = sse_events(
            completion_client.create_completion_message({"text": "good night"}, "streaming", USER)
        )
        assert_message_stream(events, conversation=False)
        assert answer_of(events) == "You said: Translate to French: good night"

    def test_missing_input(self, completion_client: CompletionClient) -> None:
        for mode in ("blocking", "streaming"):
            body = error_json(
                completion_client.create_completion_message({}, mode, USER), 400, "invalid_param"
            )
            assert body["message"] == "text is required in input form"

    def test_completion_route_of_a_chat_app(self, chat_app: ServiceApp) -> None:
        client = sdk(CompletionClient, chat_app)
        error_json(client.create_completion_message({}, "blocking", USER), 400, "app_unavailable")

    def test_model_failure(self, failing_completion_app: ServiceApp) -> None:
        client = sdk(CompletionClient, failing_completion_app)
        blocking = error_json(
            client.create_completion_message({"text": "hi"}, "blocking", USER),
            400,
            "completion_request_error",
        )
        assert blocking["message"]
        events = sse_events(client.create_completion_message({"text": "hi"}, "streaming", USER))
        error = events[-1]
        assert error["event"] == "error", events
        assert (error["code"], error["status"]) == ("completion_request_error", 400)
        assert error["message"]
        assert "message_end" not in [e["event"] for e in events]

    def test_feedback_on_a_completion(self, completion_client: CompletionClient) -> None:
        sent = ok_json(
            completion_client.create_completion_message({"text": "merci"}, "blocking", USER)
        )
        result = completion_client.message_feedback(sent["message_id"], "like", USER)
        assert ok_json(result) == {"result": "success"}


class TestDifyClient:
    def test_get_application_parameters(self, completion_app: ServiceApp) -> None:
        body = ok_json(sdk(DifyClient, completion_app).get_application_parameters(USER))
        assert body["user_input_form"] == [
            {
                "text-input": {
                    "label": "Text",
                    "variable": "text",
                    "required": True,
                    "max_length": 200,
                }
            }
        ]
        assert body["system_parameters"]["file_size_limit"] == 15
        assert body["system_parameters"]["image_file_size_limit"] == 10
        for feature in ("suggested_questions_after_answer", "speech_to_text", "text_to_speech"):
            assert body[feature]["enabled"] is False, feature

    def test_file_upload(self, chat_app: ServiceApp) -> None:
        client = sdk(DifyClient, chat_app)
        body = ok_json(
            client.file_upload(USER, files={"file": ("a.txt", b"hello", "text/plain")}), status=201
        )
        assert (body["name"], body["size"], body["extension"], body["mime_type"]) == (
            "a.txt",
            5,
            "txt",
            "text/plain",
        )
        assert uuid.UUID(body["id"]) and body["created_by"]
        assert isinstance(body["created_at"], int)
        with httpx.Client(
            base_url=chat_app.url(""), headers={"Authorization": f"Bearer {chat_app.key}"}
        ) as raw:
            preview = raw.get(f"/files/{body['id']}/preview")
        assert preview.status_code == 200 and preview.content == b"hello"

    def test_file_upload_errors(self, chat_app: ServiceApp) -> None:
        client = sdk(DifyClient, chat_app)
        error_json(client.file_upload(USER, files={}), 400, "no_file_uploaded")
        error_json(
            client.file_upload(
                USER,
                files=[
                    ("file", ("a.txt", b"a", "text/plain")),
                    ("file", ("b.txt", b"b", "text/plain")),
                ],
            ),
            400,
            "too_many_files",
        )

    def test_a_dify_client_works_for_every_app_mode(
        self, chat_app: ServiceApp, completion_app: ServiceApp
    ) -> None:
        for app in (chat_app, completion_app):
            body = ok_json(sdk(DifyClient, app).get_application_parameters(USER))
            assert "user_input_form" in body and "system_parameters" in body
