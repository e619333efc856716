"""kill -9 of whatever executes runs, mid-stream: the worker (the celery executor) or a server
(the inline executor). In flight: runs streaming to their clients (200 words, 20 ms apart).
Each run whose executor died is taken over within seconds: it ends with its partial answer
stored and a terminal event in its log, so that its clients (resuming on the other server)
assemble exactly the stored answer; nothing is lost, duplicated or left `running`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import support
from tests.faults.harness import (
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
    with fault_stack(tmp_path_factory.mktemp("celery"), slow_upstream.base_url) as stack:
        yield stack


@pytest.fixture(scope="module")
def inline_stack(
    tmp_path_factory: pytest.TempPathFactory, slow_upstream: Any
) -> Iterator[FaultStack]:
    with fault_stack(
        tmp_path_factory.mktemp("inline"), slow_upstream.base_url, executor="inline"
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
    assert taken_over <= 10
    assert support.wait_for(lambda: inline_stack.servers[0].alive)
