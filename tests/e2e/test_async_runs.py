"""Async runs (`response_mode: "async"`) over HTTP against a real server, a real Celery worker
(a thread pool of the server embedded, a `conduit worker` process distributed) and the fake
model: a submit is answered 202 at once and never runs on the request; its task is polled to
its end, whose result is the body a blocking request gives; its events can be followed and
replayed; it stops; bad input is a 400 that stores nothing; a task is its user's alone; an
Idempotency-Key returns the same task."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from tests.e2e.conftest import ServiceApp
from tests.e2e.sse import answer_of, frames
from tests.support import Stack

QUESTION = "what does the harbour look like at dawn"
ANSWER = f"You said: {QUESTION}"


def body_of(query: str = QUESTION, *, user: str = "alice", **extra: Any) -> dict[str, Any]:
    return {
        "inputs": {},
        "query": query,
        "user": user,
        "response_mode": "async",
        "auto_generate_name": False,
        **extra,
    }


def poll(client: httpx.Client, status_url: str, *, until: float = 20.0) -> dict[str, Any]:
    """The task once it ended (polled every 0.1 s here; clients start at 1 s)."""
    deadline = time.monotonic() + until
    while True:
        response = client.get(status_url.removeprefix("/v1"))
        assert response.status_code == 200, response.text
        task = response.json()
        if task["status"] not in ("pending", "running"):
            return dict(task)
        assert time.monotonic() < deadline, task
        time.sleep(0.1)


def rows(stack: Stack) -> dict[str, object]:
    tables = ("messages", "conversations", "async_tasks", "outbox")
    return {table: stack.sql(f"SELECT count(*) FROM {table}")[0][0] for table in tables}


def comparable(body: dict[str, Any]) -> dict[str, Any]:
    """A blocking body without what differs from run to run."""
    ignored = ("task_id", "id", "message_id", "conversation_id", "created_at")
    found = {k: v for k, v in body.items() if k not in ignored}
    found["metadata"] = {k: v for k, v in body["metadata"].items() if k != "usage"}
    return found


class TestAsyncRuns:
    def test_a_submit_is_accepted_at_once_and_its_result_is_the_blocking_body(
        self, chat_app: ServiceApp, upstream: Any
    ) -> None:
        upstream.control(pace_ms=40)  # a run of about a second: the 202 must not wait for it
        started = time.monotonic()
        submitted = chat_app.client.post("/chat-messages", json=body_of())
        elapsed = time.monotonic() - started
        assert submitted.status_code == 202, submitted.text
        accepted = submitted.json()
        task_id = accepted["task_id"]
        assert accepted == {
            "task_id": task_id,
            "status": "pending",
            "status_url": f"/v1/tasks/{task_id}?user=alice",
        }
        assert elapsed < 0.5  # the run takes ~1 s: it was not executed on the request
        assert submitted.headers["X-Task-Id"] == task_id
        message_id = submitted.headers["X-Message-Id"]
        task = poll(chat_app.client, accepted["status_url"])
        assert task["status"] == "succeeded"
        assert task["created_at"] <= task["started_at"] <= task["finished_at"]
        result = task["result"]
        assert result["answer"] == ANSWER
        assert result["task_id"] == task_id and result["message_id"] == message_id
        assert result["conversation_id"] == submitted.headers["X-Conversation-Id"]
        upstream.control(pace_ms=0)
        blocking = chat_app.client.post(
            "/chat-messages", json={**body_of(), "response_mode": "blocking"}
        )
        assert blocking.status_code == 200, blocking.text
        assert comparable(result) == comparable(blocking.json())
        # The run's events: replayed whole after its end, as a stream's would be.
        with chat_app.client.stream(
            "GET", f"/chat-messages/{task_id}/events", params={"user": "alice"}
        ) as response:
            assert response.status_code == 200
            items = [f for f in frames(response) if f.event != "ping"]
        assert answer_of(items) == ANSWER
        assert items[-1].event == "message_end"

    def test_a_completion_runs_async_too(self, completion_app: ServiceApp) -> None:
        submitted = completion_app.client.post(
            "/completion-messages",
            json={"inputs": {"text": "good morning"}, "user": "bob", "response_mode": "async"},
        )
        assert submitted.status_code == 202, submitted.text
        task = poll(completion_app.client, submitted.json()["status_url"])
        assert task["status"] == "succeeded"
        assert task["result"]["answer"].startswith("You said:")
        assert task["result"]["mode"] == "completion"

    def test_an_async_run_can_be_followed_live_and_stopped(
        self, chat_app: ServiceApp, upstream: Any
    ) -> None:
        upstream.control(pace_ms=60)
        query = " ".join(f"word{n}" for n in range(60))  # ~60 tokens, ~4 s
        submitted = chat_app.client.post("/chat-messages", json=body_of(query))
        assert submitted.status_code == 202
        task_id = submitted.json()["task_id"]
        seen = []
        with chat_app.client.stream(
            "GET", f"/chat-messages/{task_id}/events", params={"user": "alice"}
        ) as response:
            iterator = frames(response)
            for frame in iterator:
                if frame.event == "message":
                    seen.append(frame)
                if len(seen) == 3:
                    break
            stopped = chat_app.client.post(f"/chat-messages/{task_id}/stop", json={"user": "alice"})
            assert stopped.json() == {"result": "success", "stopped": True}
            rest = list(iterator)
        assert rest[-1].event == "message_end"
        task = poll(chat_app.client, submitted.json()["status_url"], until=5)
        assert task["status"] == "stopped"
        partial = task["result"]["answer"]
        assert partial and ANSWER not in partial and len(partial) < len(f"You said: {query}")
        assert partial == answer_of(seen + rest)

    def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(
        self, chat_app: ServiceApp
    ) -> None:
        before = rows(chat_app.stack)
        for body, message in [
            ({**body_of(), "query": ""}, "query is required"),
            ({**body_of(), "response_mode": "later"}, "response_mode must be one of"),
            (
                {**body_of(), "response_mode": "blocking", "callback_url": "http://x.example/"},
                "callback_url is only accepted with response_mode async",
            ),
            ({**body_of(), "callback_url": 42}, "callback_url must be"),
        ]:
            response = chat_app.client.post("/chat-messages", json=body)
            assert response.status_code == 400, response.text
            assert response.json()["code"] == "invalid_param"
            assert message in response.json()["message"]
        assert rows(chat_app.stack) == before

    def test_a_task_is_its_users_alone(self, chat_app: ServiceApp, upstream: Any) -> None:
        submitted = chat_app.client.post("/chat-messages", json=body_of())
        task_id = submitted.json()["task_id"]
        poll(chat_app.client, submitted.json()["status_url"])
        other_user = chat_app.client.get(f"/tasks/{task_id}", params={"user": "mallory"})
        assert other_user.status_code == 404
        assert other_user.json()["code"] == "task_not_found"
        unknown = chat_app.client.get(f"/tasks/{uuid.uuid4()}", params={"user": "alice"})
        assert unknown.status_code == 404 and unknown.json()["code"] == "task_not_found"
        no_user = chat_app.client.get(f"/tasks/{task_id}")
        assert no_user.status_code == 400 and no_user.json()["code"] == "invalid_param"

    def test_another_apps_key_does_not_see_the_task(
        self, chat_app: ServiceApp, completion_app: ServiceApp
    ) -> None:
        submitted = chat_app.client.post("/chat-messages", json=body_of())
        task_id = submitted.json()["task_id"]
        response = completion_app.client.get(f"/tasks/{task_id}", params={"user": "alice"})
        assert response.status_code == 404
        poll(chat_app.client, submitted.json()["status_url"])  # not left to reach the next test

    def test_an_idempotency_key_returns_the_same_task(
        self, chat_app: ServiceApp, upstream: Any
    ) -> None:
        key = {"Idempotency-Key": f"async-{uuid.uuid4()}"}
        query = f"{QUESTION} {key['Idempotency-Key']}"  # the model requests this test made
        first = chat_app.client.post("/chat-messages", json=body_of(query), headers=key)
        again = chat_app.client.post("/chat-messages", json=body_of(query), headers=key)
        assert first.status_code == again.status_code == 202
        assert again.json()["task_id"] == first.json()["task_id"]
        poll(chat_app.client, first.json()["status_url"])
        done = chat_app.client.post("/chat-messages", json=body_of(query), headers=key)
        assert done.json() == {**first.json(), "status": "succeeded"}
        other = chat_app.client.post("/chat-messages", json=body_of("another"), headers=key)
        assert other.status_code == 409
        assert other.json()["code"] == "idempotency_key_reused"
        [(count,)] = chat_app.stack.sql(
            "SELECT count(*) FROM async_tasks WHERE id = :id", id=first.json()["task_id"]
        )
        assert count == 1
        asked = [r for r in upstream.stats()["log"] if query in str(r["messages"])]
        assert len(asked) == 1

    def test_metrics_show_each_queues_waiting_and_stale_tasks(self, chat_app: ServiceApp) -> None:
        scraped = httpx.get(f"{chat_app.stack.base_url}/metrics", timeout=10).text
        for queue in ("generation", "webhook", "maintenance"):
            assert f'conduit_queue_waiting_tasks{{queue="{queue}"}}' in scraped
            assert f'conduit_tasks_waiting_stale{{queue="{queue}"}}' in scraped
