"""A workflow run's time limit cancels its running nodes (a model that never answers), not
only between nodes: the run ends `failed` naming the limit, the hung node `stopped`. And a
client that drops mid-stream resumes with `Last-Event-ID`: exactly the events it missed."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests import support
from tests.e2e.conftest import Admin, ServiceApp
from tests.e2e.sse import frames
from tests.e2e.test_workflow_runs import workflow_app

STACK_ENV = {"CONDUIT_RUNS_MAX_SECONDS": "2"}


@pytest.fixture
def parallel(service_stack: support.Stack, service_admin: Admin, upstream: Any) -> ServiceApp:
    upstream.reset()
    return workflow_app(service_stack, service_admin, "parallel_llm.yml")


def test_the_time_limit_cancels_a_hung_node(parallel: ServiceApp, upstream: Any) -> None:
    upstream.control(mode="hang-before-first-token", times=3)
    started = time.monotonic()
    response = parallel.client.post(
        "/workflows/run", json={"inputs": {"topic": "x"}, "user": "limits"}
    )
    took = time.monotonic() - started
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["status"] == "failed"
    assert "time limit of 2 seconds" in data["error"]
    assert took < 6, took
    run_id = response.json()["workflow_run_id"]
    with parallel.client.stream(
        "GET", f"/workflow/{run_id}/events", params={"user": "limits"}
    ) as replay:
        events = [f.data for f in frames(replay) if f.event != "ping"]
    stopped = {
        e["data"]["node_id"] for e in events
        if e["event"] == "node_finished" and e["data"]["status"] == "stopped"
    }  # fmt: skip
    assert stopped == {"llm1", "llm2", "llm3"}
    upstream.reset()


def test_a_dropped_stream_resumes_with_exactly_the_missing_events(parallel: ServiceApp) -> None:
    body = {"inputs": {"topic": "resume"}, "user": "limits", "response_mode": "streaming"}
    seen = []
    with parallel.client.stream("POST", "/workflows/run", json=body) as response:
        for frame in frames(response):
            if frame.event == "ping":
                continue
            seen.append(frame)
            if len(seen) == 4:
                break  # the client drops here
    run_id = seen[0].data["workflow_run_id"]
    last = seen[-1].id
    assert last is not None
    with parallel.client.stream(
        "GET",
        f"/workflow/{run_id}/events",
        params={"user": "limits"},
        headers={"Last-Event-ID": str(last)},
    ) as resumed:
        rest = [f for f in frames(resumed) if f.event != "ping"]
    with parallel.client.stream(
        "GET", f"/workflow/{run_id}/events", params={"user": "limits"}
    ) as whole:
        everything = [f for f in frames(whole) if f.event != "ping"]
    assert [f.id for f in seen + rest] == [f.id for f in everything]
    assert [f.data for f in seen + rest] == [f.data for f in everything]
    assert rest[-1].data["event"] == "workflow_finished"
