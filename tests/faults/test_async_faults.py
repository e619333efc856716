"""Async runs under faults: kill -9 of the worker running them, kill -9 of the server that
accepted them, and the broker down while they are submitted. The servers use the inline executor (async runs go to the worker all the same);
each run has a callback to a real HTTP receiver started here.

Asserted: every accepted task ends (`succeeded`, or `failed` with `run_interrupted` when its
worker died under it), none is left `pending` or `running`; each task's callback arrives
exactly once, delivered, saying what its status says; the model is called at most once per
run. Each scenario prints a row of `bench/faults.py`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests import support
from tests.fakes.webhook_receiver import WebhookReceiver, webhook_receiver
from tests.faults.harness import FaultStack, Row, ServiceKey, chat_app, fault_stack, report

IN_FLIGHT = 6  # the worker's -c 4: four running, two queued
ANSWER_WORDS = 100  # at 20 ms: about 2 s a run


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as started:
        yield started


@pytest.fixture(scope="module")
def broker_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.PrivateRedis]:
    """The broker's own Redis: stopping it leaves the event logs (another Redis) up."""
    server = support.PrivateRedis(tmp_path_factory.mktemp("async-broker"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def async_stack(
    tmp_path_factory: pytest.TempPathFactory,
    slow_upstream: Any,
    broker_redis: support.PrivateRedis,
) -> Iterator[FaultStack]:
    with fault_stack(
        tmp_path_factory.mktemp("async"),
        slow_upstream.base_url,
        executor="inline",
        broker_url=broker_redis.url,
        CONDUIT_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8",
        CONDUIT_WEBHOOK_BACKOFF_BASE="0.2",
    ) as stack:
        yield stack


def submit(
    stack: FaultStack,
    app: ServiceKey,
    receiver: WebhookReceiver,
    n: int,
    *,
    server: int | None = None,
) -> list[str]:
    """`n` async runs with callbacks, on the servers in turn (or all on `server`)."""
    query = " ".join(f"w{i}" for i in range(ANSWER_WORDS))
    task_ids = []
    with httpx.Client(headers={"Authorization": f"Bearer {app.key}"}, timeout=30) as client:
        for index in range(n):
            response = client.post(
                f"{stack.url(index % 2 if server is None else server)}/v1/chat-messages",
                json={
                    "inputs": {},
                    "query": query,
                    "user": f"user-{index}",
                    "response_mode": "async",
                    "auto_generate_name": False,
                    "callback_url": receiver.url,
                },
            )
            assert response.status_code == 202, response.text
            task_ids.append(response.json()["task_id"])
    return task_ids


def task_statuses(stack: FaultStack, task_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    rows = stack.sql("SELECT id, status, error_code FROM async_tasks")
    found = {str(r[0]): (str(r[1]), None if r[2] is None else str(r[2])) for r in rows}
    return {task_id: found[task_id] for task_id in task_ids}


def wait_ended(stack: FaultStack, task_ids: list[str], timeout: float) -> float:
    started = time.monotonic()
    while True:
        statuses = task_statuses(stack, task_ids)
        if all(status not in ("pending", "running") for status, _ in statuses.values()):
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, statuses
        time.sleep(0.2)


def callbacks_once(receiver: WebhookReceiver, stack: FaultStack, task_ids: list[str]) -> int:
    """Every task's callback arrived, once, with its task's status; returns the duplicates."""
    statuses = task_statuses(stack, task_ids)
    deadline = time.monotonic() + 30
    while True:
        bodies = [orjson.loads(r.body) for r in receiver.received]
        seen = [b["task_id"] for b in bodies if b["task_id"] in statuses]
        if set(seen) >= set(task_ids) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert set(seen) == set(task_ids), set(task_ids) - set(seen)
    for body in bodies:
        if body["task_id"] in statuses:
            assert body["status"] == statuses[body["task_id"]][0]
    return len(seen) - len(set(seen))


def test_kill_9_of_the_worker_running_async_runs(
    async_stack: FaultStack, receiver: WebhookReceiver, slow_upstream: Any
) -> None:
    """In flight: 6 async runs (4 running on the worker, 2 queued) with callbacks. The worker
    is killed mid-run and started again: the running ones are taken over (`failed`,
    `run_interrupted`, partial answers kept), the queued ones run on the new worker; every
    callback arrives once."""
    receiver.reset()
    slow_upstream.reset()
    app = chat_app(async_stack)
    task_ids = submit(async_stack, app, receiver, IN_FLIGHT)
    deadline = time.monotonic() + 20
    while sum(s == "running" for s, _ in task_statuses(async_stack, task_ids).values()) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(0.5)
    async_stack.worker.kill()
    killed = time.monotonic()
    async_stack.worker.start()
    wait_ended(async_stack, task_ids, timeout=60)
    recovered = time.monotonic() - killed
    statuses = task_statuses(async_stack, task_ids)
    duplicated = callbacks_once(receiver, async_stack, task_ids)
    stuck = sum(s in ("pending", "running") for s, _ in statuses.values())
    outcomes = sorted(f"{s}/{e}" if e else s for s, e in statuses.values())
    report(
        Row(
            "kill -9 worker with async runs (callbacks)",
            IN_FLIGHT,
            0,
            duplicated,
            stuck,
            round(recovered, 1),
            f"tasks {outcomes}; every callback once",
        )
    )
    assert duplicated == 0 and stuck == 0
    for status, error in statuses.values():
        assert status == "succeeded" or (status, error) == ("failed", "run_interrupted")
    assert slow_upstream.stats()["requests"] <= IN_FLIGHT  # no run called the model twice


def test_broker_down_while_async_runs_are_submitted(
    async_stack: FaultStack,
    receiver: WebhookReceiver,
    broker_redis: support.PrivateRedis,
    slow_upstream: Any,
) -> None:
    """The broker is stopped, 5 async runs are submitted (202: their outbox rows wait in the
    database), the broker comes back: every run succeeds and its callback arrives once."""
    receiver.reset()
    slow_upstream.reset()
    app = chat_app(async_stack)
    broker_redis.stop()
    try:
        task_ids = submit(async_stack, app, receiver, 5)
        time.sleep(1.0)
        statuses = task_statuses(async_stack, task_ids)
        assert all(s == "pending" for s, _ in statuses.values()), statuses
    finally:
        broker_redis.start()
    back = time.monotonic()
    wait_ended(async_stack, task_ids, timeout=60)
    ended = time.monotonic() - back
    statuses = task_statuses(async_stack, task_ids)
    duplicated = callbacks_once(receiver, async_stack, task_ids)
    report(
        Row(
            "broker down during async submits (Redis)",
            5,
            0,
            duplicated,
            0,
            round(ended, 1),
            "accepted while down; ran and called back after",
        )
    )
    assert {s for s, _ in statuses.values()} == {"succeeded"}
    assert duplicated == 0


def test_kill_9_of_the_server_that_accepted_async_runs(
    async_stack: FaultStack, receiver: WebhookReceiver, slow_upstream: Any
) -> None:
    """5 async runs submitted to server 0, which is killed (kill -9) at once: their rows and
    outbox rows were committed before each 202, so the other server's relay sends what was
    not sent yet, the worker runs every one, and every callback arrives once."""
    receiver.reset()
    slow_upstream.reset()
    app = chat_app(async_stack)
    task_ids = submit(async_stack, app, receiver, 5, server=0)
    async_stack.servers[0].kill()
    killed = time.monotonic()
    try:
        wait_ended(async_stack, task_ids, timeout=60)
        ended = time.monotonic() - killed
        statuses = task_statuses(async_stack, task_ids)
        duplicated = callbacks_once(receiver, async_stack, task_ids)
    finally:
        async_stack.start_server(0)
    report(
        Row(
            "kill -9 of the server that accepted async runs",
            5,
            0,
            duplicated,
            0,
            round(ended, 1),
            "sent by the other server's relay; ran and called back",
        )
    )
    assert {s for s, _ in statuses.values()} == {"succeeded"}
    assert duplicated == 0
