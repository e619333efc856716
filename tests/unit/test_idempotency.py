"""The pure parts of Idempotency-Key: reading the header (1-255 printable ASCII characters,
once), the request's hash (canonical: key order does not matter, the fields that define the
run do, the response mode does not), and a run's events rebuilt from its stored message."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from conduit.api.runs import idempotency_key
from conduit.core.apps.chat import BlockingReply, StoredChat, stored_events
from conduit.core.runs.status import RunStatus
from conduit.errors import InvalidParam
from conduit.services.runs import ChatRequest
from conduit.services.runs.chat import fingerprint
from conduit.services.runs.idempotency import request_hash


def request_with(*headers: tuple[bytes, bytes]) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/", "headers": list(headers)})


class TestTheHeader:
    def test_absent_is_none(self) -> None:
        assert idempotency_key(request_with((b"content-type", b"application/json"))) is None

    @pytest.mark.parametrize(
        "key", ["k", "k" * 255, "order 42 / retry ~1", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"]
    )
    def test_printable_ascii_up_to_255_is_a_key(self, key: str) -> None:
        assert idempotency_key(request_with((b"idempotency-key", key.encode()))) == key

    @pytest.mark.parametrize(
        "raw", [b"", b"k" * 256, "caf\u00e9".encode(), b"tab\there", b"nul\x00", b"del\x7f"]
    )
    def test_anything_else_is_a_400_naming_the_header(self, raw: bytes) -> None:
        with pytest.raises(InvalidParam, match="Idempotency-Key: must be 1 to 255 printable"):
            idempotency_key(request_with((b"idempotency-key", raw)))

    def test_given_twice_is_a_400(self) -> None:
        twice = request_with((b"idempotency-key", b"a"), (b"idempotency-key", b"a"))
        with pytest.raises(InvalidParam, match="Idempotency-Key: must be given once"):
            idempotency_key(twice)


def chat(**changes: Any) -> ChatRequest:
    fields: dict[str, Any] = {
        "mode": "chat",
        "inputs": {"city": "Brest", "days": {"from": 1, "to": 3}},
        "query": "Weather?",
        "response_mode": "streaming",
    }
    return ChatRequest(**{**fields, **changes})


class TestTheRequestHash:
    def test_key_order_does_not_matter_at_any_level(self) -> None:
        reordered = chat(inputs={"days": {"to": 3, "from": 1}, "city": "Brest"})
        assert request_hash(fingerprint(reordered)) == request_hash(fingerprint(chat()))

    def test_the_response_mode_does_not_define_the_run(self) -> None:
        blocking = chat(response_mode="blocking")
        assert request_hash(fingerprint(blocking)) == request_hash(fingerprint(chat()))

    @pytest.mark.parametrize(
        "changes",
        [
            {"query": "Weather!"},
            {"inputs": {"city": "Brest"}},
            {"conversation_id": "c-1"},
            {"mode": "completion"},
            {"auto_generate_name": False},
            {"files": [{"type": "image"}]},
        ],
    )
    def test_every_field_that_defines_the_run_does(self, changes: dict[str, Any]) -> None:
        assert request_hash(fingerprint(chat(**changes))) != request_hash(fingerprint(chat()))


def stored(**changes: Any) -> StoredChat:
    fields: dict[str, Any] = {
        "task_id": "t-1",
        "mode": "chat",
        "message_id": "m-1",
        "conversation_id": "c-1",
        "created_at": 1_700_000_000,
        "status": RunStatus.SUCCEEDED,
        "answer": "Sunny.",
        "metadata": {"usage": {"total_tokens": 3}, "retriever_resources": []},
        "error_message": None,
    }
    return StoredChat(**{**fields, **changes})


class TestStoredEvents:
    def test_an_answered_run_is_its_answer_then_message_end_in_the_runners_envelope(
        self,
    ) -> None:
        head = {"conversation_id": "c-1", "message_id": "m-1", "created_at": 1_700_000_000}
        assert stored_events(stored()) == [
            ("message", {"event": "message", **head, "task_id": "t-1", "id": "m-1",
                         "answer": "Sunny."}),
            ("message_end", {"event": "message_end", **head, "task_id": "t-1", "id": "m-1",
                             "metadata": {"usage": {"total_tokens": 3},
                                          "retriever_resources": []}}),
        ]  # fmt: skip

    def test_an_agents_run_is_its_rounds_then_its_answer_as_the_agents_events(self) -> None:
        rounds = [
            {"id": "r-1", "position": 1, "thought": "Calling it.", "tool": "weekday",
             "tool_labels": {}, "tool_input": "{}", "observation": '{"weekday": "Monday"}',
             "message_id": "m-1", "chain_id": None, "files": [], "created_at": 1},
            {"id": "r-2", "position": 2, "thought": "Monday.", "tool": "", "tool_labels": {},
             "tool_input": "", "observation": "", "message_id": "m-1", "chain_id": None,
             "files": [], "created_at": 2},
        ]  # fmt: skip
        events = stored_events(stored(answer="Calling it.Monday.", agent_thoughts=rounds))
        assert [name for name, _ in events] == [
            "agent_thought", "agent_thought", "agent_message", "message_end",
        ]  # fmt: skip
        first = events[0][1]
        assert isinstance(first, dict)
        assert (first["id"], first["position"], first["tool"], first["task_id"]) == (
            "r-1", 1, "weekday", "t-1",
        )  # fmt: skip
        assert first["observation"] == '{"weekday": "Monday"}' and first["message_files"] == []
        reply = BlockingReply("agent-chat")
        ends = [reply.add(name, payload) for name, payload in events if isinstance(payload, dict)]
        body = ends[-1].body if ends[-1] else None
        assert body is not None and body["answer"] == "Calling it.Monday."
        # An agent run without rounds (failed before its first) still answers as the agent.
        bare = stored_events(stored(answer="Hi", agent_thoughts=[]))
        assert [name for name, _ in bare] == ["agent_message", "message_end"]

    def test_a_completion_carries_no_conversation_and_an_empty_answer_no_message(self) -> None:
        events = stored_events(stored(mode="completion", answer="", status=RunStatus.STOPPED))
        assert [name for name, _ in events] == ["message_end"]
        assert all("conversation_id" not in payload for _, payload in events)

    def test_a_failed_run_ends_with_its_kept_error(self) -> None:
        failed = stored(
            status=RunStatus.FAILED,
            answer="Sun",
            metadata={"usage": {}, "error": {"code": "completion_request_error", "status": 400}},
            error_message="upstream said 500",
        )
        events = stored_events(failed)
        assert [name for name, _ in events] == ["message", "error"]
        assert events[-1][1] == {
            "event": "error",
            "conversation_id": "c-1",
            "message_id": "m-1",
            "created_at": 1_700_000_000,
            "status": 400,
            "code": "completion_request_error",
            "message": "upstream said 500",
        }

    def test_a_failed_run_without_a_kept_code_was_interrupted(self) -> None:
        taken_over = stored(status=RunStatus.FAILED, answer="", error_message="interrupted")
        [(name, payload)] = stored_events(taken_over)
        assert isinstance(payload, dict)
        assert (name, payload["code"], payload["status"], payload["message"]) == (
            "error",
            "run_interrupted",
            503,
            "interrupted",
        )
