"""Runs over the Service API: streaming, blocking, memory, resume, disconnects, stop, upstream
failures, limits and shutdown — against a real server and the fake model upstream."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from conduit.api.runs import RUN_HEADERS
from tests.e2e.conftest import Admin, ServiceApp, make_admin, running_stack, service_app
from tests.e2e.sse import Frame, answer_of, frames
from tests.fakes.fake_openai import answer_tokens
from tests.support import Stack, wait_for

EXECUTOR = "inline"
QUESTION = "tell me about the weather on the coast today"
# Background naming calls the model too; these tests count and steer upstream calls.
NO_NAMING = {"auto_generate_name": False}


def chat(
    app: ServiceApp, query: str = QUESTION, user: str = "alice", **extra: Any
) -> dict[str, Any]:
    body = {
        "inputs": {},
        "query": query,
        "user": user,
        "response_mode": "blocking",
        **NO_NAMING,
        **extra,
    }
    response = app.client.post("/chat-messages", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def stream(
    app: ServiceApp, query: str = QUESTION, user: str = "alice", **extra: Any
) -> list[Frame]:
    body = {
        "inputs": {},
        "query": query,
        "user": user,
        "response_mode": "streaming",
        **NO_NAMING,
        **extra,
    }
    with app.client.stream("POST", "/chat-messages", json=body) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(frames(response))


def stored_messages(
    app: ServiceApp, conversation_id: str, user: str = "alice"
) -> list[dict[str, Any]]:
    response = app.client.get(
        "/messages", params={"conversation_id": conversation_id, "user": user}
    )
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


class TestStreaming:
    def test_events_come_in_order_with_dify_fields_and_ids(self, chat_app: ServiceApp) -> None:
        items = [f for f in stream(chat_app) if f.event != "ping"]
        assert [f.event for f in items[:-1]] == ["message"] * (len(items) - 1)
        assert items[-1].event == "message_end"
        assert [f.id for f in items] == list(range(1, len(items) + 1))
        first = items[0].data
        for frame in items:
            for key in ("conversation_id", "message_id", "created_at", "task_id"):
                assert frame.data[key] == first[key], key
        assert items[0].data["id"] == first["message_id"]
        assert answer_of(items) == f"You said: {QUESTION}"
        usage = items[-1].data["metadata"]["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
        assert isinstance(usage["total_price"], str)
        stored = stored_messages(chat_app, first["conversation_id"])
        assert [m["answer"] for m in stored] == [answer_of(items)]

    def test_pieces_that_arrive_together_are_still_one_event_each(
        self, chat_app: ServiceApp, upstream: Any
    ) -> None:
        upstream.control("burst")  # the whole upstream stream in one write
        items = [f for f in stream(chat_app) if f.event != "ping"]
        assert [f.id for f in items] == list(range(1, len(items) + 1))
        pieces = [f.data["answer"] for f in items if f.event == "message"]
        assert pieces == answer_tokens(f"You said: {QUESTION}")
        assert items[-1].event == "message_end"
        assert items[-1].data["metadata"]["usage"]["completion_tokens"] == len(pieces)

    def test_completion_events_have_no_conversation(self, completion_app: ServiceApp) -> None:
        body = {"inputs": {"text": "good morning"}, "user": "bob", "response_mode": "streaming"}
        with completion_app.client.stream("POST", "/completion-messages", json=body) as response:
            items = [f for f in frames(response) if f.event != "ping"]
        assert items[-1].event == "message_end"
        assert all("conversation_id" not in f.data for f in items)
        assert answer_of(items) == "You said: Translate to French: good morning"

    def test_each_completion_message_has_a_conversation_of_its_own(
        self, completion_app: ServiceApp
    ) -> None:
        """As in Dify: the wire shows no conversation for a completion, but the message belongs
        to one (its feedback names it), a new one per message."""
        ids = []
        for text in ("one", "two"):
            body = {"inputs": {"text": text}, "user": "bob", "response_mode": "blocking"}
            answered = completion_app.client.post("/completion-messages", json=body)
            assert answered.status_code == 200, answered.text
            assert "conversation_id" not in answered.json()
            ids.append(answered.json()["message_id"])
        for message_id in ids:
            liked = completion_app.client.post(
                f"/messages/{message_id}/feedbacks", json={"rating": "like", "user": "bob"}
            )
            assert liked.status_code == 200, liked.text
        rows = completion_app.client.get("/app/feedbacks").json()["data"]
        conversations = {row["message_id"]: row["conversation_id"] for row in rows}
        assert set(conversations) == set(ids)
        assert all(conversations.values()) and len(set(conversations.values())) == 2
        for message_id, conversation_id in conversations.items():
            [(mode, turns)] = completion_app.stack.sql(
                "SELECT mode, dialogue_count FROM conversations WHERE id = :id", id=conversation_id
            )
            assert (mode, turns) == ("completion", 1), message_id


class TestRunStartRoutes:
    """The run-starting routes are dispatched ahead of FastAPI's router
    (conduit.api.hot_routes): the request context, errors and metrics must be the same."""

    def test_request_id_timing_and_metrics_label(self, chat_app: ServiceApp) -> None:
        body = {"inputs": {}, "query": "hi", "user": "alice", "response_mode": "streaming"}
        headers = {"X-Request-ID": "hot-route-1"}
        with chat_app.client.stream(
            "POST", "/chat-messages", json={**body, **NO_NAMING}, headers=headers
        ) as response:
            assert response.status_code == 200
            assert response.headers["x-request-id"] == "hot-route-1"
            assert response.headers["x-response-time"].endswith("ms")
            assert list(frames(response))[-1].event == "message_end"
        metrics = httpx.get(f"{chat_app.stack.base_url}/metrics").text
        label = 'conduit_http_requests_total{method="POST",route="/v1/chat-messages",status="200"}'
        assert label in metrics

    def test_errors_are_envelopes_with_the_request_id(self, chat_app: ServiceApp) -> None:
        url = chat_app.url("/chat-messages")
        body = {"inputs": {}, "query": "hi", "user": "alice"}
        bad_key = httpx.post(
            url, json=body, headers={"Authorization": "Bearer app-nope", "X-Request-ID": "hot-2"}
        )
        assert bad_key.status_code == 401
        assert bad_key.json() == {
            "code": "unauthorized",
            "message": "Access token is invalid",
            "status": 401,
        }
        assert bad_key.headers["x-request-id"] == "hot-2"
        no_user = chat_app.client.post("/chat-messages", json={"inputs": {}, "query": "hi"})
        assert no_user.status_code == 400
        assert set(no_user.json()) == {"code", "message", "status"}
        not_json = chat_app.client.post(
            "/chat-messages", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert not_json.status_code == 400
        assert not_json.json()["code"] == "invalid_param"
        # Only POST is served ahead of the router: other methods get FastAPI's answer.
        assert chat_app.client.get("/chat-messages").status_code == 405


class TestUsage:
    def test_usage_is_priced_from_the_app_model_prices_as_decimal_strings(
        self, service_stack: Stack, service_admin: Admin, upstream: Any
    ) -> None:
        upstream.reset()
        app = service_app(
            service_stack,
            service_admin,
            mode="chat",
            model={"prices": {"prompt": "1.5", "completion": "2", "currency": "EUR"}},
        )
        usage = chat(app)["metadata"]["usage"]
        expected_prompt = usage["prompt_tokens"] * 1.5 / 1000
        expected_completion = usage["completion_tokens"] * 2 / 1000
        assert usage["currency"] == "EUR"
        assert usage["prompt_price"] == f"{expected_prompt:.7f}"
        assert usage["total_price"] == f"{expected_prompt + expected_completion:.7f}"
        stored = stored_messages(app, chat(app)["conversation_id"])
        assert stored[-1]["total_price"] == usage["total_price"]
        assert stored[-1]["currency"] == "EUR"
        app.client.close()


class TestBlocking:
    def test_chat_blocking_shape(self, chat_app: ServiceApp) -> None:
        body = chat(chat_app)
        assert set(body) == {
            "event",
            "task_id",
            "id",
            "message_id",
            "conversation_id",
            "mode",
            "answer",
            "metadata",
            "created_at",
        }
        assert body["event"] == "message"
        assert body["id"] == body["message_id"]
        assert body["mode"] == "chat"
        assert body["answer"] == f"You said: {QUESTION}"
        assert set(body["metadata"]) == {"usage", "retriever_resources"}

    def test_completion_blocking_shape(self, completion_app: ServiceApp) -> None:
        response = completion_app.client.post(
            "/completion-messages", json={"inputs": {"text": "cheese"}, "user": "bob"}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert "conversation_id" not in body
        assert body["mode"] == "completion"
        assert body["answer"] == "You said: Translate to French: cheese"


class TestConversations:
    def test_a_conversation_continues_and_remembers(
        self, chat_app: ServiceApp, upstream: Any
    ) -> None:
        first = chat(chat_app, "my name is Ada")
        second = chat(chat_app, "what is my name", conversation_id=first["conversation_id"])
        assert second["conversation_id"] == first["conversation_id"]
        stored = stored_messages(chat_app, first["conversation_id"])
        assert [m["query"] for m in stored] == ["my name is Ada", "what is my name"]
        prompts = [r.get("messages") for r in upstream.stats()["log"] if r.get("messages")]
        last = next(p for p in reversed(prompts) if p[-1]["content"] == "what is my name")
        assert [m["role"] for m in last] == ["system", "user", "assistant", "user"]
        assert last[1]["content"] == "my name is Ada"
        assert last[2]["content"] == "You said: my name is Ada"

    def test_another_users_conversation_does_not_exist(self, chat_app: ServiceApp) -> None:
        first = chat(chat_app, user="alice")
        response = chat_app.client.post(
            "/chat-messages",
            json={
                "inputs": {},
                "query": "hi",
                "user": "mallory",
                "conversation_id": first["conversation_id"],
                **NO_NAMING,
            },
        )
        assert response.status_code == 404
        assert response.json()["message"] == "Conversation Not Exists."


class TestRunNames:
    """Every run-starting response names its run in its headers, before its first event: a
    client cut before any event can still resume the run instead of starting a second one."""

    def test_a_client_cut_before_its_first_event_resumes_by_the_header(
        self, chat_app: ServiceApp, upstream: Any
    ) -> None:
        upstream.control(pace_ms=40)
        body = {
            "inputs": {},
            "query": "name your run",
            "user": "alice",
            "response_mode": "streaming",
            **NO_NAMING,
        }
        with chat_app.client.stream("POST", "/chat-messages", json=body) as response:
            assert response.status_code == 200
            names = {k: response.headers.get(k) for k in RUN_HEADERS}
            # Gone before reading a byte of the body.
        assert all(names.values()), names
        with chat_app.client.stream(
            "GET", f"/chat-messages/{names['X-Task-Id']}/events", params={"user": "alice"}
        ) as resumed:
            assert resumed.status_code == 200
            assert resumed.headers["X-Task-Id"] == names["X-Task-Id"]
            items = [f for f in frames(resumed) if f.event != "ping"]
        assert items[-1].event == "message_end"
        assert answer_of(items) == f"You said: {body['query']}"
        assert {f.data["task_id"] for f in items} == {names["X-Task-Id"]}
        assert items[0].data["message_id"] == names["X-Message-Id"]
        assert items[0].data["conversation_id"] == names["X-Conversation-Id"]
        assert len(stored_messages(chat_app, names["X-Conversation-Id"] or "")) == 1

    def test_blocking_answers_and_completions_are_named_too(
        self, chat_app: ServiceApp, completion_app: ServiceApp
    ) -> None:
        answered = chat_app.client.post(
            "/chat-messages", json={"inputs": {}, "query": "hi", "user": "alice", **NO_NAMING}
        )
        assert answered.status_code == 200, answered.text
        data = answered.json()
        assert (
            answered.headers["X-Task-Id"],
            answered.headers["X-Message-Id"],
            answered.headers["X-Conversation-Id"],
        ) == (data["task_id"], data["message_id"], data["conversation_id"])
        body = {"inputs": {"text": "bonjour"}, "user": "bob", "response_mode": "streaming"}
        with completion_app.client.stream("POST", "/completion-messages", json=body) as response:
            items = [f for f in frames(response) if f.event != "ping"]
            assert response.headers["X-Task-Id"] == items[0].data["task_id"]
            assert response.headers["X-Message-Id"] == items[0].data["message_id"]
            # As in its events, a completion's conversation stays off the wire.
            assert "X-Conversation-Id" not in response.headers


class TestResume:
    def test_resume_after_a_drop_delivers_every_delta_exactly_once(
        self, chat_app: ServiceApp, upstream: Any
    ) -> None:
        upstream.control(pace_ms=40)
        query = " ".join(f"word{i}" for i in range(25))
        body = {
            "inputs": {},
            "query": query,
            "user": "alice",
            "response_mode": "streaming",
            **NO_NAMING,
        }
        seen: list[Frame] = []
        with chat_app.client.stream("POST", "/chat-messages", json=body) as response:
            for frame in frames(response):
                if frame.event != "ping":
                    seen.append(frame)
                if len(seen) == 4:
                    break  # the client goes away mid-stream
        task_id = seen[0].data["task_id"]
        with chat_app.client.stream(
            "GET",
            f"/chat-messages/{task_id}/events",
            params={"user": "alice"},
            headers={"Last-Event-ID": str(seen[-1].id)},
        ) as response:
            assert response.status_code == 200
            rest = [f for f in frames(response) if f.event != "ping"]
        together = seen + rest
        assert [f.id for f in together] == list(range(1, len(together) + 1))
        assert together[-1].event == "message_end"
        stored = stored_messages(chat_app, seen[0].data["conversation_id"])
        assert stored[-1]["answer"] == answer_of(together) == f"You said: {query}"

    def test_a_finished_run_replays_to_its_end_from_any_point(self, chat_app: ServiceApp) -> None:
        items = [f for f in stream(chat_app) if f.event != "ping"]
        task_id = items[0].data["task_id"]
        for after in (0, 2, len(items) - 1):
            with chat_app.client.stream(
                "GET", f"/chat-messages/{task_id}/events", params={"user": "alice", "after": after}
            ) as response:
                replay = [f for f in frames(response) if f.event != "ping"]
            assert [f.id for f in replay] == [f.id for f in items[after:]]

    def test_another_user_cannot_resume(self, chat_app: ServiceApp) -> None:
        items = stream(chat_app)
        task_id = items[0].data["task_id"]
        response = chat_app.client.get(
            f"/chat-messages/{task_id}/events", params={"user": "mallory"}
        )
        assert response.status_code == 404


class TestDisconnect:
    def test_a_client_that_goes_away_still_gets_the_full_answer_stored(
        self, chat_app: ServiceApp, upstream: Any
    ) -> None:
        upstream.control(pace_ms=30)
        query = " ".join(f"token{i}" for i in range(20))
        body = {
            "inputs": {},
            "query": query,
            "user": "alice",
            "response_mode": "streaming",
            **NO_NAMING,
        }
        with chat_app.client.stream("POST", "/chat-messages", json=body) as response:
            first = next(f for f in frames(response) if f.event == "message")
        conversation_id = first.data["conversation_id"]

        def complete() -> bool:
            stored = stored_messages(chat_app, conversation_id)
            return bool(stored) and stored[-1]["answer"] == f"You said: {query}"

        wait_for(complete, timeout=15, interval=0.1, what="the full answer to be stored")


class TestStop:
    def test_owner_stops_within_a_second_and_the_partial_answer_is_stored(
        self, chat_app: ServiceApp, upstream: Any
    ) -> None:
        upstream.control(pace_ms=100)
        query = " ".join(f"w{i}" for i in range(80))
        body = {
            "inputs": {},
            "query": query,
            "user": "alice",
            "response_mode": "streaming",
            **NO_NAMING,
        }
        items: list[Frame] = []
        with chat_app.client.stream("POST", "/chat-messages", json=body) as response:
            iterator = frames(response)
            for frame in iterator:
                if frame.event == "message":
                    items.append(frame)
                if len(items) == 3:
                    break
            task_id = items[0].data["task_id"]
            started = time.monotonic()
            stopped = chat_app.client.post(f"/chat-messages/{task_id}/stop", json={"user": "alice"})
            assert stopped.json() == {"result": "success", "stopped": True}
            for frame in iterator:
                items.append(frame)
            elapsed = time.monotonic() - started
        assert items[-1].event == "message_end"
        assert elapsed < 1.0, elapsed
        partial = answer_of(items)
        assert 0 < len(partial) < len(f"You said: {query}")
        stored = stored_messages(chat_app, items[0].data["conversation_id"])
        assert stored[-1]["answer"] == partial
        stats = upstream.wait_for_stats(
            lambda s: any(r["outcome"] == "client-disconnected" for r in s["log"]), timeout=3
        )
        assert stats["disconnects"] >= 1  # the model call was really closed

    def test_another_user_cannot_stop_a_run(self, chat_app: ServiceApp, upstream: Any) -> None:
        upstream.control(pace_ms=20)
        query = " ".join(f"w{i}" for i in range(30))
        body = {
            "inputs": {},
            "query": query,
            "user": "alice",
            "response_mode": "streaming",
            **NO_NAMING,
        }
        with chat_app.client.stream("POST", "/chat-messages", json=body) as response:
            iterator = frames(response)
            first = next(f for f in iterator if f.event == "message")
            other = chat_app.client.post(
                f"/chat-messages/{first.data['task_id']}/stop", json={"user": "mallory"}
            )
            assert other.json() == {"result": "success", "stopped": False}
            rest = [first, *iterator]
        assert rest[-1].event == "message_end"
        assert answer_of(rest) == f"You said: {query}"

    def test_stopping_an_unknown_task_is_a_quiet_success(self, chat_app: ServiceApp) -> None:
        response = chat_app.client.post("/chat-messages/not-a-task/stop", json={"user": "alice"})
        assert response.json() == {"result": "success", "stopped": False}
        missing_user = chat_app.client.post("/chat-messages/not-a-task/stop", json={})
        assert missing_user.status_code == 400


class TestUpstreamFailures:
    def test_a_500_is_an_error_event_in_a_stream_and_400_json_when_blocking(
        self, chat_app: ServiceApp, upstream: Any
    ) -> None:
        upstream.control("status-500", times=2)
        items = [f for f in stream(chat_app) if f.event != "ping"]
        assert [f.event for f in items] == ["error"]
        assert items[0].data["code"] == "completion_request_error"
        assert items[0].data["status"] == 400
        assert "task_id" not in items[0].data
        response = chat_app.client.post(
            "/chat-messages", json={"inputs": {}, "query": "q", "user": "alice", **NO_NAMING}
        )
        assert response.status_code == 400
        assert response.json()["code"] == "completion_request_error"
        assert chat(chat_app)["answer"]  # the next request works
        stored = stored_messages(chat_app, items[0].data["conversation_id"])
        assert stored[-1]["status"] == "error"

    def test_a_rejected_key_upstream_is_provider_not_initialize(
        self, chat_app: ServiceApp, upstream: Any
    ) -> None:
        upstream.control("status-401")
        response = chat_app.client.post(
            "/chat-messages", json={"inputs": {}, "query": "q", "user": "alice", **NO_NAMING}
        )
        assert response.status_code == 400
        assert response.json()["code"] == "provider_not_initialize"


class TestLimits:
    def test_the_app_concurrency_limit_refuses_with_429_and_frees_the_slot(
        self, chat_app: ServiceApp, upstream: Any, service_admin: Admin
    ) -> None:
        updated = service_admin.client.put(
            f"/console/api/apps/{chat_app.app_id}", json={"max_active_requests": 1}
        )
        assert updated.status_code == 200
        upstream.control(pace_ms=60)
        body = {
            "inputs": {},
            "query": "one two three four five six",
            "user": "alice",
            "response_mode": "streaming",
            **NO_NAMING,
        }
        with chat_app.client.stream("POST", "/chat-messages", json=body) as response:
            iterator = frames(response)
            next(f for f in iterator if f.event == "message")
            refused = chat_app.client.post(
                "/chat-messages", json={"inputs": {}, "query": "q", "user": "bob", **NO_NAMING}
            )
            assert refused.status_code == 429
            assert refused.json()["code"] == "too_many_requests"
            assert int(refused.headers["retry-after"]) >= 1
            list(iterator)
        upstream.control(pace_ms=0)
        wait_for(
            lambda: (
                chat_app.client.post(
                    "/chat-messages", json={"inputs": {}, "query": "q", "user": "bob", **NO_NAMING}
                ).status_code
                == 200
            ),
            timeout=5,
            what="the slot to be free again",
        )
        # A failing run gives its slot back too.
        upstream.control("status-500")
        assert (
            chat_app.client.post(
                "/chat-messages", json={"inputs": {}, "query": "q", "user": "bob", **NO_NAMING}
            ).status_code
            == 400
        )
        assert (
            chat_app.client.post(
                "/chat-messages", json={"inputs": {}, "query": "q", "user": "bob", **NO_NAMING}
            ).status_code
            == 200
        )


class TestCircuitBreaker:
    def test_the_circuit_opens_after_repeated_failures_and_closes_after_recovery(
        self, tmp_path: Any, upstream: Any
    ) -> None:
        with running_stack(
            tmp_path,
            CONDUIT_MODEL_BASE_URL=upstream.base_url,
            CONDUIT_MODEL_MAX_RETRIES="0",
            CONDUIT_MODEL_BREAKER_FAILURES="2",
            CONDUIT_MODEL_BREAKER_RESET="1",
        ) as stack:
            admin = make_admin(stack)
            app = service_app(stack, admin, mode="completion")  # no background naming calls
            upstream.reset()
            upstream.control("status-503", times=10)
            body = {"inputs": {}, "query": "q", "user": "u"}
            for _ in range(2):
                assert app.client.post("/completion-messages", json=body).status_code == 400
            requests_before = upstream.stats()["requests"]
            fast = app.client.post("/completion-messages", json=body)
            assert fast.status_code == 400
            assert "unavailable" in fast.json()["message"].lower()
            assert (
                upstream.stats()["requests"] == requests_before
            )  # failed fast, upstream untouched
            upstream.control("ok")
            time.sleep(1.2)
            assert app.client.post("/completion-messages", json=body).status_code == 200
            app.client.close()
            admin.client.close()


class TestShutdown:
    def test_sigterm_mid_stream_ends_the_run_stopped_with_its_partial_answer(
        self, tmp_path: Any, upstream: Any
    ) -> None:
        with running_stack(
            tmp_path,
            CONDUIT_MODEL_BASE_URL=upstream.base_url,
            CONDUIT_HTTP_SHUTDOWN_TIMEOUT="1",
        ) as stack:
            admin = make_admin(stack)
            app = service_app(stack, admin, mode="chat")
            upstream.reset()
            upstream.control(pace_ms=100)
            query = " ".join(f"w{i}" for i in range(100))
            body = {
                "inputs": {},
                "query": query,
                "user": "u",
                "response_mode": "streaming",
                **NO_NAMING,
            }
            got: list[Frame] = []

            def consume() -> None:
                try:
                    with app.client.stream("POST", "/chat-messages", json=body) as response:
                        for frame in frames(response):
                            got.append(frame)
                except httpx.HTTPError:
                    pass

            reader = threading.Thread(target=consume)
            reader.start()
            wait_for(
                lambda: len([f for f in got if f.event == "message"]) >= 3,
                what="the stream to start",
            )
            stack.server.stop()
            reader.join(10)
            rows = stack.sql("SELECT status, answer FROM messages")
            assert len(rows) == 1
            status, answer = rows[0]
            assert status == "stopped"
            assert 0 < len(str(answer)) < len(f"You said: {query}")
            assert stack.sql("SELECT count(*) FROM messages WHERE status = 'running'") == [(0,)]
            app.client.close()
            admin.client.close()


class TestTimeoutsAndRates:
    def test_an_upstream_that_hangs_times_out_and_a_key_over_its_rate_gets_429(
        self, tmp_path: Any, upstream: Any
    ) -> None:
        with running_stack(
            tmp_path,
            CONDUIT_MODEL_BASE_URL=upstream.base_url,
            CONDUIT_MODEL_MAX_RETRIES="0",
            CONDUIT_MODEL_READ_TIMEOUT="0.5",
            CONDUIT_RUNS_REQUESTS_PER_MINUTE_PER_KEY="3",
        ) as stack:
            admin = make_admin(stack)
            app = service_app(stack, admin, mode="completion")
            upstream.reset()
            upstream.control("hang-before-first-token")
            body = {"inputs": {}, "query": "q", "user": "u", "response_mode": "streaming"}
            started = time.monotonic()
            with app.client.stream("POST", "/completion-messages", json=body) as response:
                items = [f for f in frames(response) if f.event != "ping"]
            assert time.monotonic() - started < 5
            assert [f.event for f in items] == ["error"]
            assert items[0].data["code"] == "completion_request_error"
            blocking = {"inputs": {}, "query": "q", "user": "u"}
            assert app.client.post("/completion-messages", json=blocking).status_code == 200
            assert app.client.post("/completion-messages", json=blocking).status_code == 200
            refused = app.client.post("/completion-messages", json=blocking)
            assert refused.status_code == 429
            assert refused.json()["code"] == "too_many_requests"
            assert 1 <= int(refused.headers["retry-after"]) <= 60
            app.client.close()
            admin.client.close()
