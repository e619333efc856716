"""An async run's task is kept for `CONDUIT_RUNS_ASYNC_RETENTION_HOURS` after its end, then
removed by beat (with its Idempotency-Key); a status request for it answers 404
`task_expired`, which its time-ordered id tells from a task that never was. Async runs have a
time limit of their own (`CONDUIT_RUNS_ASYNC_MAX_SECONDS`). Without an allow-list, a loopback
callback is refused."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from conduit.core.runs.spec import time_ordered_id
from tests import support
from tests.conftest import DISTRIBUTED
from tests.e2e.conftest import Admin, ServiceApp
from tests.e2e.sse import answer_of, frames
from tests.e2e.test_async_runs import body_of, poll
from tests.e2e.test_workflow_runs import workflow_app

# A retention of about two seconds, so that the purge can be seen (beat runs it every half),
# and the logs' of about three; async runs limited to 2 s (the others keep the default 600 s).
STACK_ENV = {
    "CONDUIT_RUNS_ASYNC_RETENTION_HOURS": "0.0006",
    "CONDUIT_RUNS_LOG_RETENTION_DAYS": "0.00003",
    "CONDUIT_RUNS_ASYNC_MAX_SECONDS": "2",
}


@pytest.fixture(scope="module", autouse=True)
def beat(service_stack: support.Stack) -> Iterator[None]:
    """Distributed, beat is a process of its own (`conduit beat`); embedded, the server's."""
    if not DISTRIBUTED:
        yield
        return
    process = support.Process(
        ["beat"],
        env=service_stack.env,
        cwd=service_stack.workdir,
        log=service_stack.workdir / "beat.log",
    )
    process.start()
    yield
    process.stop()


class TestRetention:
    def test_a_task_past_its_retention_answers_task_expired(self, chat_app: ServiceApp) -> None:
        submitted = chat_app.client.post("/chat-messages", json=body_of())
        task_id = submitted.json()["task_id"]
        assert poll(chat_app.client, submitted.json()["status_url"])["status"] == "succeeded"
        deadline = time.monotonic() + 20
        while True:
            response = chat_app.client.get(f"/tasks/{task_id}", params={"user": "alice"})
            if response.status_code == 404:
                break
            assert time.monotonic() < deadline, "the task was not removed"
            time.sleep(0.3)
        assert response.json()["code"] == "task_expired"
        assert chat_app.stack.sql(
            "SELECT count(*) FROM async_tasks WHERE id = :id", id=task_id
        ) == [(0,)]
        # The run's message stays (it is the conversation's history); its key is forgotten.
        [(status,)] = chat_app.stack.sql(
            "SELECT status FROM messages WHERE task_id = :id", id=task_id
        )
        assert status == "succeeded"
        # A recent id that names no task was never one.
        fresh = chat_app.client.get(f"/tasks/{time_ordered_id()}", params={"user": "alice"})
        assert fresh.json()["code"] == "task_not_found"
        # An Idempotency-Key lives as long as its task: the same key starts a new run now.
        key = {"Idempotency-Key": "kept-as-long-as-the-task"}
        first = chat_app.client.post("/chat-messages", json=body_of(), headers=key)
        poll(chat_app.client, first.json()["status_url"])
        deadline = time.monotonic() + 20
        while chat_app.stack.sql(
            "SELECT count(*) FROM async_tasks WHERE id = :id", id=first.json()["task_id"]
        ) != [(0,)]:
            assert time.monotonic() < deadline, "the task was not removed"
            time.sleep(0.3)
        again = chat_app.client.post("/chat-messages", json=body_of(), headers=key)
        assert again.status_code == 202
        assert again.json()["task_id"] != first.json()["task_id"]

    def test_a_loopback_callback_is_refused_without_an_allow_list(
        self, chat_app: ServiceApp
    ) -> None:
        """This stack allows no private target: loopback is refused at submit, nothing stored."""
        before = chat_app.stack.sql("SELECT count(*) FROM async_tasks")
        response = chat_app.client.post(
            "/chat-messages", json=body_of(callback_url="http://127.0.0.1:9/hook")
        )
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "invalid_param"
        assert response.json()["message"].startswith("callback_url")
        assert "127.0.0.1" in response.json()["message"]
        assert chat_app.stack.sql("SELECT count(*) FROM async_tasks") == before

    def test_an_async_run_has_its_own_time_limit(self, chat_app: ServiceApp, upstream: Any) -> None:
        """A 4 s answer: async (limit 2 s) it ends `failed` `run_time_limit_exceeded` with
        its partial answer; streaming (limit 600 s) the same answer completes."""
        upstream.control(pace_ms=70)
        query = " ".join(f"word{n}" for n in range(55))
        submitted = chat_app.client.post("/chat-messages", json=body_of(query))
        task = poll(chat_app.client, submitted.json()["status_url"])
        assert task["status"] == "failed"
        assert task["error"]["code"] == "run_time_limit_exceeded"
        assert "2 seconds" in task["error"]["message"]
        [(answer,)] = chat_app.stack.sql(
            "SELECT answer FROM messages WHERE task_id = :id", id=task["task_id"]
        )
        assert answer and len(str(answer)) < len(f"You said: {query}")
        with chat_app.client.stream(
            "POST", "/chat-messages", json={**body_of(query), "response_mode": "streaming"}
        ) as response:
            items = [f for f in frames(response) if f.event != "ping"]
        assert items[-1].event == "message_end"
        assert answer_of(items) == f"You said: {query}"


def test_a_workflow_run_past_the_logs_retention_is_removed_with_its_nodes(
    service_stack: support.Stack, service_admin: Admin
) -> None:
    """Beat removes a finished workflow run once the logs' retention (~3 s here) is past: its
    run and node executions go, `GET /v1/workflows/run/{id}` answers 404; a chat app's
    conversation in the same stack stays."""
    flow = workflow_app(service_stack, service_admin, "branch_and_code.yml")
    body = flow.client.post("/workflows/run", json={"inputs": {"n": 21}, "user": "u"}).json()
    run_id = body["workflow_run_id"]
    assert body["data"]["status"] == "succeeded", body
    assert flow.client.get(f"/workflows/run/{run_id}").status_code == 200
    nodes = "SELECT count(*) FROM workflow_node_executions WHERE workflow_run_id = :id"
    [(count,)] = service_stack.sql(nodes, id=run_id)
    assert int(str(count)) >= 3
    messages = service_stack.sql("SELECT count(*) FROM messages")
    deadline = time.monotonic() + 30
    while (found := flow.client.get(f"/workflows/run/{run_id}")).status_code == 200:
        assert time.monotonic() < deadline, "the run was not removed"
        time.sleep(0.3)
    assert found.status_code == 404, found.text
    assert service_stack.sql(nodes, id=run_id) == [(0,)]
    assert service_stack.sql("SELECT count(*) FROM messages") == messages


def test_a_workflow_tasks_key_is_forgotten_with_it(
    service_stack: support.Stack, service_admin: Admin
) -> None:
    """As a chat run's: once an async workflow run's task is removed, its Idempotency-Key starts
    a new run (the run itself is kept until the logs' retention)."""
    flow = workflow_app(service_stack, service_admin, "branch_and_code.yml")
    key = {"Idempotency-Key": "a-workflow-key-kept-as-long-as-its-task"}
    body = {"inputs": {"n": 21}, "user": "u", "response_mode": "async"}
    first = flow.client.post("/workflows/run", json=body, headers=key)
    assert first.status_code == 202, first.text
    assert poll(flow.client, first.json()["status_url"])["status"] == "succeeded"
    deadline = time.monotonic() + 20
    while service_stack.sql(
        "SELECT count(*) FROM async_tasks WHERE id = :id", id=first.json()["task_id"]
    ) != [(0,)]:
        assert time.monotonic() < deadline, "the task was not removed"
        time.sleep(0.3)
    again = flow.client.post("/workflows/run", json=body, headers=key)
    assert again.status_code == 202, again.text
    assert again.json()["task_id"] != first.json()["task_id"]
    assert poll(flow.client, again.json()["status_url"])["status"] == "succeeded"
