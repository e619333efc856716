"""`Idempotency-Key` on the run-creating routes, over HTTP against a real server and the fake
model: a repeat attaches to the run the first request started (a stream replays it from the
start, a blocking request gets the same body) and never starts another; the same key with
another body is a 409 that writes nothing; simultaneous duplicates make one run; a bad key
is a 400 naming the header; the key belongs to one app and one end user."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from conduit.api.runs import RUN_HEADERS
from tests.e2e.conftest import Admin, ServiceApp, service_app
from tests.e2e.sse import Frame, answer_of, frames
from tests.support import Stack

EXECUTOR = "inline"
KEY = "Idempotency-Key"
QUESTION = "what does the coast look like this morning"
ANSWER = f"You said: {QUESTION}"


def body_of(
    query: str = QUESTION, *, mode: str = "streaming", user: str = "alice"
) -> dict[str, Any]:
    # No background naming: it calls the model too, and these tests count the model's calls.
    return {
        "inputs": {},
        "query": query,
        "user": user,
        "response_mode": mode,
        "auto_generate_name": False,
    }


def names_of(response: httpx.Response) -> dict[str, str | None]:
    return {name: response.headers.get(name) for name in RUN_HEADERS}


def stream_keyed(
    client: httpx.Client, path: str, body: dict[str, Any], key: str
) -> tuple[dict[str, str | None], list[Frame]]:
    with client.stream("POST", path, json=body, headers={KEY: key}) as response:
        assert response.status_code == 200, response.read()
        return names_of(response), [f for f in frames(response) if f.event != "ping"]


def block_keyed(client: httpx.Client, path: str, body: dict[str, Any], key: str) -> httpx.Response:
    response = client.post(path, json={**body, "response_mode": "blocking"}, headers={KEY: key})
    assert response.status_code == 200, response.text
    return response


def model_calls(upstream: Any) -> int:
    return int(upstream.stats()["requests"])


def messages_of(stack: Stack, app_id: str) -> int:
    [(count,)] = stack.sql("SELECT count(*) FROM messages WHERE app_id = :app", app=app_id)
    return int(str(count))


def rows(stack: Stack) -> dict[str, object]:
    """Every table a run's start writes, counted."""
    tables = ("messages", "conversations", "end_users", "outbox")
    return {table: stack.sql(f"SELECT count(*) FROM {table}")[0][0] for table in tables}


def as_sent(items: list[Frame]) -> list[tuple[int | None, dict[str, Any]]]:
    return [(f.id, f.data) for f in items]


class TestIdempotencyKeys:
    def test_a_streaming_repeat_replays_the_same_run_from_the_start(
        self, chat_app: ServiceApp, upstream: Any
    ) -> None:
        first_names, first = stream_keyed(chat_app.client, "/chat-messages", body_of(), "s-1")
        again_names, again = stream_keyed(chat_app.client, "/chat-messages", body_of(), "s-1")
        assert first[-1].event == "message_end" and answer_of(first) == ANSWER
        assert as_sent(again) == as_sent(first)
        assert again_names == first_names and all(first_names.values())
        assert first_names["X-Task-Id"] == first[0].data["task_id"]
        assert model_calls(upstream) == 1
        assert messages_of(chat_app.stack, chat_app.app_id) == 1

    def test_a_blocking_repeat_returns_the_same_body_and_a_stream_replays_it(
        self, chat_app: ServiceApp, upstream: Any
    ) -> None:
        first = block_keyed(chat_app.client, "/chat-messages", body_of(), "b-1")
        again = block_keyed(chat_app.client, "/chat-messages", body_of(), "b-1")
        assert again.json() == first.json()
        assert first.json()["answer"] == ANSWER
        assert names_of(again) == names_of(first)
        # The response mode is how a run is answered, not what it is: a streaming repeat
        # replays the same run.
        names, replayed = stream_keyed(chat_app.client, "/chat-messages", body_of(), "b-1")
        assert names == names_of(first)
        assert answer_of(replayed) == ANSWER
        assert replayed[-1].data["metadata"] == first.json()["metadata"]
        assert model_calls(upstream) == 1
        assert messages_of(chat_app.stack, chat_app.app_id) == 1

    def test_a_blocking_repeat_waits_for_the_run_still_streaming(
        self, chat_app: ServiceApp, upstream: Any
    ) -> None:
        upstream.control(pace_ms=40)
        query = " ".join(f"wave{i}" for i in range(20))
        with chat_app.client.stream(
            "POST", "/chat-messages", json=body_of(query), headers={KEY: "w-1"}
        ) as response:
            live = frames(response)
            seen = [next(f for f in live if f.event == "message")]
            answered = block_keyed(chat_app.client, "/chat-messages", body_of(query), "w-1")
            seen += [f for f in live if f.event != "ping"]
        assert answered.json()["answer"] == answer_of(seen) == f"You said: {query}"
        assert answered.json()["task_id"] == seen[0].data["task_id"]
        assert model_calls(upstream) == 1

    def test_the_same_key_with_another_body_is_409_and_writes_nothing(
        self, chat_app: ServiceApp, upstream: Any
    ) -> None:
        block_keyed(chat_app.client, "/chat-messages", body_of("one"), "d-1")
        before = rows(chat_app.stack)
        for changed in (body_of("two"), {**body_of("one"), "inputs": {"topic": "tea"}}):
            refused = chat_app.client.post("/chat-messages", json=changed, headers={KEY: "d-1"})
            assert refused.status_code == 409, refused.text
            assert refused.json() == {
                "code": "idempotency_key_reused",
                "message": "This Idempotency-Key was already used with a different request; "
                "use a new key for a new request.",
                "status": 409,
            }
        assert rows(chat_app.stack) == before
        assert model_calls(upstream) == 1

    def test_simultaneous_duplicates_make_one_run(
        self, chat_app: ServiceApp, upstream: Any
    ) -> None:
        upstream.control(pace_ms=20)
        ready = threading.Barrier(4)
        results: list[tuple[str | None, str]] = []
        failures: list[BaseException] = []

        def duplicate(mode: str) -> None:
            try:
                with httpx.Client(base_url=chat_app.url(""), headers=chat_app.client.headers) as c:
                    ready.wait(5)
                    if mode == "streaming":
                        names, items = stream_keyed(c, "/chat-messages", body_of(), "c-1")
                        results.append((names["X-Task-Id"], answer_of(items)))
                    else:
                        answered = block_keyed(c, "/chat-messages", body_of(), "c-1").json()
                        results.append((answered["task_id"], answered["answer"]))
            except BaseException as error:  # reported below, on the test's thread
                failures.append(error)

        threads = [
            threading.Thread(target=duplicate, args=(mode,))
            for mode in ("streaming", "streaming", "blocking", "blocking")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not failures, failures
        assert len(results) == 4
        assert len({task_id for task_id, _ in results}) == 1
        assert {answer for _, answer in results} == {ANSWER}
        assert messages_of(chat_app.stack, chat_app.app_id) == 1
        assert model_calls(upstream) == 1

    def test_a_client_cut_before_its_first_event_retries_and_gets_the_whole_answer_once(
        self, chat_app: ServiceApp, upstream: Any
    ) -> None:
        upstream.control(pace_ms=40)
        query = " ".join(f"tide{i}" for i in range(15))
        with chat_app.client.stream(
            "POST", "/chat-messages", json=body_of(query), headers={KEY: "cut-1"}
        ) as response:
            assert response.status_code == 200
            cut = names_of(response)
            # Gone before reading a byte of the body: the retry is all the client has.
        names, items = stream_keyed(chat_app.client, "/chat-messages", body_of(query), "cut-1")
        assert names == cut
        assert [f.id for f in items] == list(range(1, len(items) + 1))
        assert items[-1].event == "message_end"
        assert answer_of(items) == f"You said: {query}"
        stored = chat_app.stack.sql(
            "SELECT answer FROM messages WHERE id = :id", id=names["X-Message-Id"]
        )
        assert stored == [(answer_of(items),)]
        assert model_calls(upstream) == 1
        assert messages_of(chat_app.stack, chat_app.app_id) == 1

    def test_bad_keys_are_400_naming_the_header_and_write_nothing(
        self, chat_app: ServiceApp, upstream: Any
    ) -> None:
        before = rows(chat_app.stack)
        name = KEY.encode()
        bad = [
            [(name, b"")],
            [(name, b"k" * 256)],
            [(name, "caf\u00e9".encode())],
            [(name, b"tab\there")],
            [(name, b"one"), (name, b"two")],
        ]
        for headers in bad:
            refused = chat_app.client.post(
                "/chat-messages", json=body_of(mode="blocking"), headers=headers
            )
            assert refused.status_code == 400, (headers, refused.text)
            assert refused.json()["code"] == "invalid_param"
            assert "Idempotency-Key" in refused.json()["message"]
        assert rows(chat_app.stack) == before
        assert model_calls(upstream) == 0
        # The bounds themselves are keys: 255 characters, spaces and any printable ASCII.
        for key in ("k" * 255, "order 42 / retry ~1"):
            block_keyed(chat_app.client, "/chat-messages", body_of(), key)
        assert model_calls(upstream) == 2

    def test_another_user_or_another_app_with_the_same_key_is_another_run(
        self, chat_app: ServiceApp, service_stack: Stack, service_admin: Admin, upstream: Any
    ) -> None:
        alice = block_keyed(chat_app.client, "/chat-messages", body_of(), "shared").json()
        bob = block_keyed(chat_app.client, "/chat-messages", body_of(user="bob"), "shared").json()
        other_app = service_app(service_stack, service_admin, mode="chat")
        try:
            elsewhere = block_keyed(other_app.client, "/chat-messages", body_of(), "shared").json()
        finally:
            other_app.client.close()
        assert len({alice["task_id"], bob["task_id"], elsewhere["task_id"]}) == 3
        assert model_calls(upstream) == 3
        # Each still attaches to its own.
        again = block_keyed(chat_app.client, "/chat-messages", body_of(user="bob"), "shared")
        assert again.json() == bob
        assert model_calls(upstream) == 3

    def test_a_first_request_that_was_refused_stored_nothing_under_its_key(
        self, completion_app: ServiceApp, upstream: Any
    ) -> None:
        path = "/completion-messages"
        missing_input = {"inputs": {}, "user": "bob", "response_mode": "blocking"}
        refused = completion_app.client.post(path, json=missing_input, headers={KEY: "r-1"})
        assert refused.status_code == 400, refused.text
        valid = {**missing_input, "inputs": {"text": "bonjour"}}
        answered = block_keyed(completion_app.client, path, valid, "r-1")
        assert answered.json()["answer"] == "You said: Translate to French: bonjour"
        # A completion's conversation stays off the wire, on a repeat too.
        assert "X-Conversation-Id" not in answered.headers
        assert block_keyed(completion_app.client, path, valid, "r-1").json() == answered.json()
        assert model_calls(upstream) == 1

    def test_a_repeat_takes_no_slot_of_the_app(
        self, chat_app: ServiceApp, service_admin: Admin, upstream: Any
    ) -> None:
        limited = service_admin.client.put(
            f"/console/api/apps/{chat_app.app_id}", json={"max_active_requests": 1}
        )
        assert limited.status_code == 200, limited.text
        upstream.control(pace_ms=40)
        query = " ".join(f"gull{i}" for i in range(15))
        with chat_app.client.stream(
            "POST", "/chat-messages", json=body_of(query), headers={KEY: "slot-1"}
        ) as response:
            live = frames(response)
            first = next(f for f in live if f.event == "message")
            other = chat_app.client.post("/chat-messages", json=body_of("q", mode="blocking"))
            assert other.status_code == 429  # the one slot is taken
            repeat = block_keyed(chat_app.client, "/chat-messages", body_of(query), "slot-1")
            assert repeat.json()["task_id"] == first.data["task_id"]
            list(live)
        assert model_calls(upstream) == 1

    def test_the_console_debugger_takes_the_key_too(
        self, chat_app: ServiceApp, service_admin: Admin, upstream: Any
    ) -> None:
        path = f"/console/api/apps/{chat_app.app_id}/chat-messages"
        body = {"inputs": {}, "query": QUESTION, "auto_generate_name": False}
        names, first = stream_keyed(service_admin.client, path, body, "debug-1")
        again_names, again = stream_keyed(service_admin.client, path, body, "debug-1")
        assert as_sent(again) == as_sent(first) and again_names == names
        assert answer_of(first) == ANSWER
        refused = service_admin.client.post(
            path, json={**body, "query": "another"}, headers={KEY: "debug-1"}
        )
        assert refused.status_code == 409
        assert refused.json()["code"] == "idempotency_key_reused"
        assert model_calls(upstream) == 1
