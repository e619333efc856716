"""PostgreSQL restarted (a cluster of the test's own) while runs stream, with the celery and
the inline executors: in flight, 6 runs of a 4 s answer, the database down for 5 s from their
first second, so that they end (and store their results) while it is down. Each run's store
is retried until the database is back; nothing is lost, duplicated or left `running`, every
stream equals its stored answer; requests meanwhile are 503 with `Retry-After`, and after the
return the first request succeeds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.faults.harness import (
    Client,
    FaultStack,
    Row,
    audit,
    chat_app,
    fault_stack,
    report,
    wait_none_running,
)

IN_FLIGHT = 6
OUTAGE = 5.0


@pytest.fixture(scope="module", params=["celery", "inline"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, slow_upstream: Any
) -> Iterator[FaultStack]:
    with fault_stack(
        tmp_path_factory.mktemp(f"pg-{request.param}"),
        slow_upstream.base_url,
        executor=request.param,
        own_postgres=True,
    ) as started:
        yield started


def test_postgresql_restarted_under_load(stack: FaultStack) -> None:
    assert stack.postgres is not None
    app = chat_app(stack)
    clients = [Client(stack, app, user=f"user-{n}").start() for n in range(IN_FLIGHT)]
    for client in clients:
        assert client.first_event.wait(20), client.error
    time.sleep(1.0)
    stack.postgres.stop("fast")
    statuses: list[int] = []
    try:
        down_until = time.monotonic() + OUTAGE
        while time.monotonic() < down_until:
            response = httpx.post(
                f"{stack.url(1)}/v1/chat-messages",
                json={"inputs": {}, "query": "now?", "user": "during", "response_mode": "blocking"},
                headers={"Authorization": f"Bearer {app.key}"},
                timeout=15,
            )
            statuses.append(response.status_code)
            if response.status_code == 503:
                assert response.headers.get("Retry-After")
            time.sleep(0.5)
    finally:
        stack.postgres.start()
    back = time.monotonic()
    # The first request after the return: its status comes with the headers.
    with httpx.stream(
        "POST",
        f"{stack.url(0)}/v1/chat-messages",
        json={"inputs": {}, "query": "back?", "user": "after", "response_mode": "streaming"},
        headers={"Authorization": f"Bearer {app.key}"},
        timeout=30,
    ) as first:
        recovered = time.monotonic() - back
        first.read()
    for client in clients:
        client.join(60)
    settled = wait_none_running(stack, timeout=30)
    found = audit(stack, app, clients)
    ended = stack.sql(
        "SELECT status, count(*) FROM messages WHERE app_id = :app AND end_user_id IN"
        " (SELECT id FROM end_users WHERE session_id LIKE 'user-%') GROUP BY status",
        app=app.app_id,
    )
    report(
        Row(
            f"PostgreSQL restarted ({OUTAGE:g} s down, {stack.executor})",
            IN_FLIGHT,
            found.lost,
            found.duplicated,
            found.stuck,
            round(recovered, 1),
            f"runs {dict(ended)}; during: {sorted(set(statuses))}; "  # type: ignore[arg-type]
            f"settled {settled:.1f} s after",
        )
    )
    found.assert_clean()
    assert found.accepted == IN_FLIGHT
    assert set(statuses) <= {200, 503}, statuses
    assert first.status_code == 200, first.text
