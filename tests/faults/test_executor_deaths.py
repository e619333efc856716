"""kill -9 of whatever executes runs, mid-stream: the worker (the celery executor) or a server
(the inline executor). In flight: runs streaming to their clients (200 words, 20 ms apart).
Each run whose executor died is taken over within seconds: it ends with its partial answer
stored and a terminal event in its log, so that its clients (resuming on the other server)
assemble exactly the stored answer; nothing is lost, duplicated or left `running`."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import support
from tests.faults.harness import (
    PACE_MS,
    Client,
    FaultStack,
    Row,
    ServiceKey,
    audit,
    chat_app,
    fault_stack,
    report,
    wait_none_running,
)

IN_FLIGHT = 6


@pytest.fixture(scope="module")
def celery_stack(
    tmp_path_factory: pytest.TempPathFactory, slow_upstream: Any
) -> Iterator[FaultStack]:
    with fault_stack(
        tmp_path_factory.mktemp("celery"),
        slow_upstream.base_url,
        CONDUIT_TASKS_SHUTDOWN_TIMEOUT="6",
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def inline_stack(
    tmp_path_factory: pytest.TempPathFactory, slow_upstream: Any
) -> Iterator[FaultStack]:
    with fault_stack(
        tmp_path_factory.mktemp("inline"),
        slow_upstream.base_url,
        executor="inline",
        CONDUIT_HTTP_SHUTDOWN_TIMEOUT="6",
    ) as stack:
        yield stack


def _streaming(stack: FaultStack, app: ServiceKey, count: int, server: int = 0) -> list[Client]:
    clients = [
        Client(stack, app, user=f"user-{index}", server=server).start() for index in range(count)
    ]
    for client in clients:
        assert client.first_event.wait(20), client.error
    return clients


def _join(clients: list[Client]) -> None:
    for client in clients:
        client.join(120)


def test_a_healthy_stack_passes_the_audit(celery_stack: FaultStack) -> None:
    app = chat_app(celery_stack)
    clients = _streaming(celery_stack, app, 3)
    _join(clients)
    found = audit(celery_stack, app, clients)
    found.assert_clean()
    assert found.accepted == 3
    assert all(client.ended and client.frames[-1].event == "message_end" for client in clients)


def test_kill_9_of_the_worker_mid_stream(celery_stack: FaultStack, tmp_path: Path) -> None:
    app = chat_app(celery_stack)
    clients = _streaming(celery_stack, app, IN_FLIGHT)
    time.sleep(1.0)  # about a quarter of each answer streamed
    celery_stack.worker.kill()
    killed = time.monotonic()
    taken_over = wait_none_running(celery_stack, timeout=30)
    celery_stack.worker.start()
    _join(clients)
    found = audit(celery_stack, app, clients)
    report(
        Row(
            "kill -9 worker mid-stream (celery)",
            IN_FLIGHT,
            found.lost,
            found.duplicated,
            found.stuck,
            round(taken_over, 1),
            "runs taken over, partial answers stored",
        )
    )
    found.assert_clean()
    assert found.accepted == IN_FLIGHT
    assert taken_over <= 10, f"takeover took {time.monotonic() - killed:.1f} s"
    # Afterwards the restarted worker runs new work.
    after = _streaming(celery_stack, app, 1)
    _join(after)
    assert after[0].frames[-1].event == "message_end"


def test_kill_9_of_the_worker_mid_agent_run(celery_stack: FaultStack) -> None:
    """In flight: agent runs whose tool (the maths provider's) has answered and whose second
    round streams (200 words). Each is taken over with its answer so far and its rounds as
    its log reported them: the tool call and its observation are kept on the message."""
    tools = [
        {
            "provider_type": "builtin",
            "provider_id": "maths",
            "tool_name": "eval_expression",
            "enabled": True,
        }
    ]
    app = chat_app(celery_stack, mode="agent-chat", agent_mode={"enabled": True, "tools": tools})
    clients = [
        Client(
            celery_stack, app, user=f"agent-{index}", query='eval_expression {"expression": "6*7"}'
        )
        for index in range(3)
    ]
    for client in clients:
        client.start()
    support.wait_for(
        lambda: all("Tool said" in client.answer for client in clients),
        timeout=30,
        interval=0.05,
        what="every agent streaming its second round",
    )
    time.sleep(0.5)
    celery_stack.worker.kill()
    taken_over = wait_none_running(celery_stack, timeout=30)
    celery_stack.worker.start()
    _join(clients)
    found = audit(celery_stack, app, clients)
    report(
        Row(
            "kill -9 worker mid agent run (celery)",
            len(clients),
            found.lost,
            found.duplicated,
            found.stuck,
            round(taken_over, 1),
            "answers and tool calls kept",
        )
    )
    found.assert_clean()
    assert found.accepted == len(clients)
    for client in clients:
        ((status, stored),) = celery_stack.sql(
            "SELECT status, agent_thoughts FROM messages WHERE task_id = :task",
            task=client.task_id,
        )
        assert status == "failed"
        thoughts = stored if isinstance(stored, list) else json.loads(stored)
        assert [t["position"] for t in thoughts] == [1, 2]
        assert thoughts[0]["tool"] == "eval_expression"
        assert json.loads(thoughts[0]["observation"]) == {"eval_expression": "42"}
        assert client.answer.startswith("Calling eval_expression.Tool said: 42 w0")


def test_kill_9_of_a_server_running_inline_runs(inline_stack: FaultStack) -> None:
    app = chat_app(inline_stack)
    clients = _streaming(inline_stack, app, IN_FLIGHT, server=0)
    time.sleep(1.0)
    inline_stack.servers[0].kill()
    taken_over = wait_none_running(inline_stack, timeout=30)
    _join(clients)
    found = audit(inline_stack, app, clients)
    report(
        Row(
            "kill -9 server mid-stream (inline)",
            IN_FLIGHT,
            found.lost,
            found.duplicated,
            found.stuck,
            round(taken_over, 1),
            "clients resume on the other server",
        )
    )
    inline_stack.start_server(0)
    found.assert_clean()
    assert found.accepted == IN_FLIGHT
    # Each client, resuming on the other server from the last event it was shown (which the
    # dead server may not have written to Redis yet), got the taker's end: the stored answer.
    assert all(client.ended for client in clients), [c.error for c in clients]
    assert taken_over <= 10
    assert support.wait_for(lambda: inline_stack.servers[0].alive)


def test_sigterm_under_load_drains_within_the_grace(
    inline_stack: FaultStack, slow_upstream: Any
) -> None:
    """In flight: 6 runs of a 10 s answer on server 0 (inline executor), shutdown budget 6 s.
    The server exits within its budget; the runs it cut short are stored `stopped` with their
    partial answers and their logs ended, and their clients (resuming on server 1) assemble
    exactly that."""
    app = chat_app(inline_stack)
    slow_upstream.control(pace_ms=50)  # 200 words: a 10 s answer
    try:
        clients = _streaming(inline_stack, app, IN_FLIGHT, server=0)
        time.sleep(1.0)
        began = time.monotonic()
        inline_stack.servers[0].signal(signal.SIGTERM)
        assert inline_stack.servers[0].process is not None
        inline_stack.servers[0].process.wait(30)
        exited = time.monotonic() - began
        _join(clients)
    finally:
        slow_upstream.control(pace_ms=PACE_MS)
    found = audit(inline_stack, app, clients)
    statuses = inline_stack.sql(
        "SELECT status, count(*) FROM messages WHERE app_id = :app GROUP BY status", app=app.app_id
    )
    report(
        Row(
            "SIGTERM under load (inline, budget 6 s)",
            IN_FLIGHT,
            found.lost,
            found.duplicated,
            found.stuck,
            round(exited, 1),
            f"exited in {exited:.1f} s; runs {dict(statuses)}",  # type: ignore[arg-type]
        )
    )
    inline_stack.start_server(0)
    found.assert_clean()
    assert found.accepted == IN_FLIGHT
    assert exited <= 6.5, f"the server took {exited:.1f} s to exit"
    assert dict(statuses) == {"stopped": IN_FLIGHT}  # type: ignore[arg-type]


def test_sigterm_of_the_worker_under_load_drains_within_the_grace(
    celery_stack: FaultStack, slow_upstream: Any
) -> None:
    """In flight: 4 runs of a 10 s answer on the worker (threads pool), its shutdown budget
    6 s. It exits within the budget; the runs it cut short are stored `stopped` with their
    partial answers and their logs ended, and their clients assemble exactly that."""
    app = chat_app(celery_stack)
    slow_upstream.control(pace_ms=50)
    in_flight = 4  # the worker's -c 4: all of them running, none queued
    try:
        clients = _streaming(celery_stack, app, in_flight)
        time.sleep(1.0)
        began = time.monotonic()
        celery_stack.worker.signal(signal.SIGTERM)
        assert celery_stack.worker.process is not None
        celery_stack.worker.process.wait(30)
        exited = time.monotonic() - began
        _join(clients)
    finally:
        slow_upstream.control(pace_ms=PACE_MS)
        celery_stack.worker.start()
    found = audit(celery_stack, app, clients)
    statuses = dict(
        celery_stack.sql(  # type: ignore[arg-type]
            "SELECT status, count(*) FROM messages WHERE app_id = :app GROUP BY status",
            app=app.app_id,
        )
    )
    report(
        Row(
            "SIGTERM of the worker under load (budget 6 s)",
            in_flight,
            found.lost,
            found.duplicated,
            found.stuck,
            round(exited, 1),
            f"exited in {exited:.1f} s; runs {statuses}",
        )
    )
    found.assert_clean()
    assert exited <= 6.5, f"the worker took {exited:.1f} s to exit"
    assert statuses == {"stopped": in_flight}


def test_a_dead_workers_slots_free_with_its_leases(
    celery_stack: FaultStack, slow_upstream: Any
) -> None:
    """An app allowing 3 concurrent runs, all 3 in flight on the worker, which is killed: the
    429s meanwhile say when a slot can free (at most a lease away), and a new run is accepted
    once the dead runs are taken over — seconds, not the 10 minutes of a slot's old TTL."""
    app = chat_app(celery_stack, max_active_requests=3)
    clients = _streaming(celery_stack, app, 3)
    refused = httpx.post(
        f"{celery_stack.url(1)}/v1/chat-messages",
        json={"inputs": {}, "query": "one more", "user": "late", "response_mode": "blocking"},
        headers={"Authorization": f"Bearer {app.key}"},
        timeout=10,
    )
    assert refused.status_code == 429, refused.text
    assert 1 <= int(refused.headers["Retry-After"]) <= 6
    celery_stack.worker.kill()
    killed = time.monotonic()
    celery_stack.worker.start()

    def accepted() -> bool:
        # The status is known with the headers: the run then goes on without this client.
        with httpx.stream(
            "POST",
            f"{celery_stack.url(1)}/v1/chat-messages",
            json={"inputs": {}, "query": "again", "user": "late", "response_mode": "streaming"},
            headers={"Authorization": f"Bearer {app.key}"},
            timeout=30,
        ) as response:
            assert response.status_code in (200, 429), response.read()
            return response.status_code == 200

    support.wait_for(accepted, timeout=30, interval=0.5, what="a slot")
    freed = time.monotonic() - killed
    _join(clients)
    found = audit(celery_stack, app, clients)
    report(
        Row(
            "limits after a worker's kill -9 (3 of 3 slots)",
            3,
            found.lost,
            found.duplicated,
            found.stuck,
            round(freed, 1),
            "time until a new run is accepted",
        )
    )
    found.assert_clean()
    assert freed <= 10


def test_clients_cut_before_their_first_event_retry_with_their_keys(
    celery_stack: FaultStack, slow_upstream: Any
) -> None:
    """Each client's first attempt is cut before any byte of the response (a 1 ms read
    timeout: the run may or may not have been accepted); it retries on the other server with
    the same `Idempotency-Key`. Exactly one run per key, the model called once per key, and
    every client gets its whole answer exactly once."""
    app = chat_app(celery_stack)
    clients: list[Client] = []
    for index in range(IN_FLIGHT):
        key = f"cut-{index}-{time.monotonic_ns()}"
        query = f"question {key}"
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(
                f"{celery_stack.url(0)}/v1/chat-messages",
                json={
                    "inputs": {},
                    "query": query,
                    "user": f"cut-{index}",
                    "response_mode": "streaming",
                    "auto_generate_name": False,  # naming would call the model with the query
                },
                headers={"Authorization": f"Bearer {app.key}", "Idempotency-Key": key},
                timeout=httpx.Timeout(5.0, read=0.001),
            )
        clients.append(
            Client(
                celery_stack,
                app,
                user=f"cut-{index}",
                query=query,
                server=1,
                idempotency_key=key,
                auto_generate_name=False,
            ).start()
        )
    _join(clients)
    found = audit(celery_stack, app, clients)
    runs_per_key = celery_stack.sql(
        "SELECT idempotency_key, count(*) FROM messages WHERE app_id = :app"
        " GROUP BY idempotency_key",
        app=app.app_id,
    )
    calls = slow_upstream.stats()["log"]
    model_calls = {
        client.query: sum(
            1
            for record in calls
            if any(client.query == m.get("content") for m in record["messages"][-1:])
        )
        for client in clients
    }
    report(
        Row(
            "clients cut before their first event retry with Idempotency-Key",
            IN_FLIGHT,
            found.lost,
            found.duplicated,
            found.stuck,
            0.0,
            f"runs per key {sorted({int(str(n)) for _, n in runs_per_key})}, "  # type: ignore[call-overload]
            f"model calls per key {sorted(set(model_calls.values()))}",
        )
    )
    found.assert_clean()
    assert {int(str(n)) for _, n in runs_per_key} == {1}
    assert len(runs_per_key) == IN_FLIGHT
    assert set(model_calls.values()) == {1}
    assert all(client.frames[-1].event == "message_end" for client in clients)
