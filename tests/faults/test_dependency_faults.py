"""Faults of what runs depend on, with the inline executor on one server: the model endpoint
failing, then hanging (its circuit breaker opens, runs fail fast, it recovers once the endpoint
does), and slow readers (a client that reads nothing while its run streams: the server's
memory stays bounded, and the client still gets the whole answer once it reads).

In flight: sequential runs during each fault, then runs after it. Every run ends (no run left
`running`), its stream equals its stored answer, and none is duplicated."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.sse import frames
from tests.faults.harness import (
    Client,
    FaultStack,
    Row,
    ServiceKey,
    audit,
    chat_app,
    fault_stack,
    report,
)

BREAKER_FAILURES = 3
BREAKER_RESET = 3.0
READ_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, slow_upstream: Any) -> Iterator[FaultStack]:
    with fault_stack(
        tmp_path_factory.mktemp("dependencies"),
        slow_upstream.base_url,
        executor="inline",
        servers=1,
        CONDUIT_MODEL_READ_TIMEOUT=str(READ_TIMEOUT),
        CONDUIT_MODEL_BREAKER_FAILURES=str(BREAKER_FAILURES),
        CONDUIT_MODEL_BREAKER_RESET=str(BREAKER_RESET),
    ) as started:
        yield started


@pytest.fixture
def upstream(slow_upstream: Any) -> Iterator[Any]:
    yield slow_upstream
    slow_upstream.reset()  # its start-up answer and pace, no queued modes


def _run(stack: FaultStack, app: ServiceKey, user: str) -> tuple[Client, float]:
    began = time.monotonic()
    # No conversation naming: its model calls (on the worker) would be counted too.
    client = Client(stack, app, user=user, auto_generate_name=False).start()
    client.join(60)
    return client, time.monotonic() - began


@pytest.mark.parametrize(
    ("mode", "label"),
    [("status-500", "model endpoint failing (500)"), ("hang-before-first-token", "model hanging")],
)
def test_the_breaker_opens_fails_fast_and_recovers(
    stack: FaultStack, upstream: Any, mode: str, label: str
) -> None:
    app = chat_app(stack)
    upstream.reset()
    upstream.control(mode, times=1000)
    clients: list[Client] = []
    # Failures until the breaker opens: each fails (at the read timeout when it hangs).
    for index in range(BREAKER_FAILURES):
        client, _ = _run(stack, app, f"failing-{index}")
        clients.append(client)
        assert client.frames[-1].event == "error", client.frames[-1:]
    called = upstream.stats()["requests"]
    # Open: runs fail fast, without calling the model.
    fast: list[float] = []
    for index in range(3):
        client, took = _run(stack, app, f"fast-{index}")
        clients.append(client)
        fast.append(took)
        assert client.frames[-1].event == "error"
        assert "unavailable" in str(client.frames[-1].data.get("message"))
    assert upstream.stats()["requests"] == called
    # The endpoint comes back: the first trial after the reset succeeds.
    upstream.control("ok")
    ended = time.monotonic()
    recovered: float | None = None
    while time.monotonic() - ended < 15:
        client, _ = _run(stack, app, "after")
        clients.append(client)
        if client.frames and client.frames[-1].event == "message_end":
            assert client.first_event_at is not None
            recovered = client.first_event_at - ended  # its first token: the model answers
            break
        time.sleep(0.2)
    found = audit(stack, app, clients)
    report(
        Row(
            label,
            len(clients),
            found.lost,
            found.duplicated,
            found.stuck,
            round(recovered or -1, 1),
            f"open circuit fails in {max(fast) * 1000:.0f} ms at most; "
            f"recovery includes the {BREAKER_RESET:g} s reset",
        )
    )
    found.assert_clean()
    assert max(fast) < 1.0
    assert recovered is not None and recovered <= BREAKER_RESET + 2


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slow_readers_keep_memory_bounded(stack: FaultStack, upstream: Any) -> None:
    """20 clients open streams of a 4,000-word answer sent as fast as the model can and read
    nothing until it has ended: the server's memory grows by little more than the answers
    themselves, and each client then reads its whole answer, equal to the stored one."""
    app = chat_app(stack)
    upstream.control(pace_ms=0, answer=" ".join(f"word{n}" for n in range(4000)))
    server = stack.servers[0].process
    assert server is not None
    before = _rss_kib(server.pid)
    readers = 20
    opened: list[tuple[httpx.Client, httpx.Response]] = []
    try:
        for index in range(readers):
            client = httpx.Client(timeout=httpx.Timeout(10.0, read=60.0))
            request = client.build_request(
                "POST",
                f"{stack.url(0)}/v1/chat-messages",
                json={
                    "inputs": {},
                    "query": "a long one",
                    "user": f"slow-{index}",
                    "response_mode": "streaming",
                },
                headers={"Authorization": f"Bearer {app.key}"},
            )
            response = client.send(request, stream=True)
            assert response.status_code == 200
            opened.append((client, response))
        task_ids = [response.headers["X-Task-Id"] for _, response in opened]

        def all_ended() -> bool:
            rows = stack.sql(
                "SELECT count(*) FROM messages WHERE app_id = :app AND status = 'succeeded'",
                app=app.app_id,
            )
            return rows[0][0] == readers

        deadline = time.monotonic() + 60
        while not all_ended():
            assert time.monotonic() < deadline, "the runs of slow readers did not end"
            time.sleep(0.2)
        grown_mib = (_rss_kib(server.pid) - before) / 1024
        answers = []
        for _, response in opened:
            read = list(frames(response))
            answers.append(
                "".join(str(f.data.get("answer", "")) for f in read if f.event == "message")
            )
    finally:
        for client, response in opened:
            response.close()
            client.close()
    stored = {
        str(row[0]): str(row[1])
        for row in stack.sql(
            "SELECT task_id, answer FROM messages WHERE app_id = :app", app=app.app_id
        )
    }
    mismatched = sum(
        1 for task, answer in zip(task_ids, answers, strict=True) if stored[task] != answer
    )
    report(
        Row(
            "slow readers (20 × 4,000 words, read after the end)",
            readers,
            0,
            0,
            0,
            0.0,
            f"server memory grew {grown_mib:.0f} MiB; {mismatched} streams differ from storage",
        )
    )
    assert mismatched == 0
    assert all(len(answer) > 30_000 for answer in answers)
    assert grown_mib < 100, f"the server grew by {grown_mib:.0f} MiB for {readers} slow readers"
