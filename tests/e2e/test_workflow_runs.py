"""Workflow apps over the Service API: a DSL workflow (tests/e2e/workflows/*.yml) drafted and
published through the console, then run blocking and streaming, stopped, read back and
replayed — against a real server whose model is the fake upstream."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests import support
from tests.e2e.conftest import Admin, ServiceApp
from tests.e2e.sse import frames

HERE = Path(__file__).parent / "workflows"


def workflow_app(stack: support.Stack, admin: Admin, dsl_file: str) -> ServiceApp:
    """An app of the DSL file's mode, its graph drafted and published, with an app key."""
    return published_app(stack, admin, yaml.safe_load((HERE / dsl_file).read_text()))


def published_app(stack: support.Stack, admin: Admin, dsl: dict[str, Any]) -> ServiceApp:
    """An app of a DSL document (as loaded from YAML), drafted and published, with a key."""
    created = admin.client.post(
        "/console/api/apps", json={"name": dsl["app"]["name"], "mode": dsl["app"]["mode"]}
    )
    assert created.status_code == 201, created.text
    app_id = created.json()["data"]["id"]
    flow = dsl["workflow"]
    synced = admin.client.post(
        f"/console/api/apps/{app_id}/workflows/draft",
        json={
            "graph": flow["graph"],
            "features": flow.get("features") or {},
            "environment_variables": flow.get("environment_variables") or [],
            "conversation_variables": flow.get("conversation_variables") or [],
        },
    )
    assert synced.status_code == 200, synced.text
    published = admin.client.post(f"/console/api/apps/{app_id}/workflows/publish", json={})
    assert published.status_code in (200, 201), published.text
    key = admin.client.post(f"/console/api/apps/{app_id}/api-keys").json()["data"]["token"]
    client = httpx.Client(
        base_url=f"{stack.base_url}/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    return ServiceApp(stack, app_id, key, client)


@pytest.fixture
def parallel(service_stack: support.Stack, service_admin: Admin, upstream: Any) -> ServiceApp:
    upstream.reset()
    return workflow_app(service_stack, service_admin, "parallel_llm.yml")


@pytest.fixture
def branching(service_stack: support.Stack, service_admin: Admin) -> ServiceApp:
    return workflow_app(service_stack, service_admin, "branch_and_code.yml")


def run(app: ServiceApp, inputs: dict[str, Any], **extra: Any) -> httpx.Response:
    return app.client.post("/workflows/run", json={"inputs": inputs, "user": "wf-user", **extra})


def stream(app: ServiceApp, inputs: dict[str, Any]) -> list[dict[str, Any]]:
    with app.client.stream(
        "POST",
        "/workflows/run",
        json={"inputs": inputs, "user": "wf-user", "response_mode": "streaming"},
    ) as response:
        assert response.status_code == 200, response.read()
        return [frame.data for frame in frames(response) if frame.event != "ping"]


def test_a_blocking_run_answers_dify_s_shape_with_every_output(parallel: ServiceApp) -> None:
    response = run(parallel, {"topic": "cats"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"task_id", "workflow_run_id", "data"}
    data = body["data"]
    assert data["status"] == "succeeded" and data["error"] is None
    assert data["id"] == body["workflow_run_id"]
    assert data["outputs"] == {
        "all": "You said: one poem about cats|You said: one joke about cats|"
        "You said: one fact about cats",
        "poem": "You said: one poem about cats",
    }
    assert data["total_steps"] == 6 and data["total_tokens"] > 0
    assert {"elapsed_time", "created_at", "finished_at", "workflow_id"} <= set(data)


def test_a_stream_reports_each_node_and_the_parallel_branches_overlap(
    parallel: ServiceApp,
) -> None:
    events = stream(parallel, {"topic": "dogs"})
    names = [e["event"] for e in events]
    assert names[0] == "workflow_started" and names[-1] == "workflow_finished"
    run_id = events[0]["workflow_run_id"]
    assert all(e["workflow_run_id"] == run_id for e in events)
    assert len({e["task_id"] for e in events}) == 1
    llm_started = [
        i for i, e in enumerate(events)
        if e["event"] == "node_started" and e["data"]["node_type"] == "llm"
    ]  # fmt: skip
    llm_finished = [
        i for i, e in enumerate(events)
        if e["event"] == "node_finished" and e["data"]["node_type"] == "llm"
    ]  # fmt: skip
    assert len(llm_started) == 3 and len(llm_finished) == 3
    # Every branch started before any of them finished: they ran at once.
    assert max(llm_started) < min(llm_finished)
    finished = {e["data"]["node_id"]: e["data"] for e in events if e["event"] == "node_finished"}
    assert finished["join"]["predecessor_node_id"] in {"llm1", "llm2", "llm3"}
    assert all(node["status"] == "succeeded" for node in finished.values())
    indexes = [e["data"]["index"] for e in events if e["event"] == "node_started"]
    assert sorted(indexes) == list(range(1, 7))
    # The end's streaming output (llm1's text) went out as text_chunk, in order.
    chunks = [e["data"] for e in events if e["event"] == "text_chunk"]
    assert "".join(c["text"] for c in chunks) == "You said: one poem about dogs"
    assert {tuple(c["from_variable_selector"]) for c in chunks} == {("llm1", "text")}
    assert events[-1]["data"]["status"] == "succeeded"


def test_a_missing_required_input_is_refused_before_anything_runs(parallel: ServiceApp) -> None:
    response = run(parallel, {})
    assert response.status_code == 400
    assert response.json()["message"] == "topic is required in input form"


def test_a_chat_key_on_the_workflow_route_is_not_a_workflow_app(
    service_stack: support.Stack, service_admin: Admin
) -> None:
    from tests.e2e.conftest import service_app

    chat = service_app(service_stack, service_admin, mode="chat", pre_prompt="Hi")
    response = run(chat, {})
    assert response.status_code == 400 and response.json()["code"] == "not_workflow_app"


def test_a_workflow_key_on_the_chat_route_is_not_a_chat_app(parallel: ServiceApp) -> None:
    response = parallel.client.post(
        "/chat-messages", json={"inputs": {}, "query": "hi", "user": "wf-user"}
    )
    assert response.status_code == 400 and response.json()["code"] == "not_chat_app"


def test_a_branch_takes_one_path_and_code_runs_in_its_own_process(branching: ServiceApp) -> None:
    big = run(branching, {"n": 21}).json()["data"]
    assert big["status"] == "succeeded" and big["outputs"] == {"answer": 42}
    small = run(branching, {"n": 3}).json()["data"]
    assert small["outputs"] == {"answer": "Hello, 3 is small"}  # the env variable too


def test_a_failing_node_fails_the_run_with_http_200_and_its_error(branching: ServiceApp) -> None:
    events = stream(branching, {"n": 50, "boom": "now"})
    failed = [
        e for e in events if e["event"] == "node_finished" and e["data"]["status"] == "failed"
    ]
    assert [e["data"]["node_id"] for e in failed] == ["double"]
    assert "ValueError: asked to fail: now" in failed[0]["data"]["error"]
    assert events[-1]["event"] == "workflow_finished"
    assert events[-1]["data"]["status"] == "failed"
    assert "asked to fail" in events[-1]["data"]["error"]
    assert not [e for e in events if e["event"] == "error"]
    blocking = run(branching, {"n": 50, "boom": "again"})
    assert blocking.status_code == 200 and blocking.json()["data"]["status"] == "failed"


def test_a_run_is_read_back_and_its_events_replayed(parallel: ServiceApp) -> None:
    body = run(parallel, {"topic": "owls"}).json()
    got = parallel.client.get(f"/workflows/run/{body['workflow_run_id']}")
    assert got.status_code == 200, got.text
    view = got.json()
    assert view["status"] == "succeeded" and view["outputs"] == body["data"]["outputs"]
    assert isinstance(view["inputs"], str) and '"owls"' in view["inputs"]
    with parallel.client.stream(
        "GET", f"/workflow/{body['workflow_run_id']}/events", params={"user": "wf-user"}
    ) as replay:
        assert replay.status_code == 200
        events = [frame.data for frame in frames(replay) if frame.event != "ping"]
    assert events[0]["event"] == "workflow_started" and events[-1]["event"] == "workflow_finished"
    other = parallel.client.get(
        f"/workflow/{body['workflow_run_id']}/events", params={"user": "someone-else"}
    )
    assert other.status_code == 404
    assert parallel.client.get("/workflows/run/not-a-run").status_code == 404


def test_stop_cancels_the_running_nodes_and_ends_the_run_stopped(
    parallel: ServiceApp, upstream: Any
) -> None:
    upstream.control(mode="hang-before-first-token", times=3)
    with parallel.client.stream(
        "POST",
        "/workflows/run",
        json={"inputs": {"topic": "x"}, "user": "wf-user", "response_mode": "streaming"},
    ) as response:
        events: list[dict[str, Any]] = []
        asked = 0.0
        for frame in frames(response):
            if frame.event == "ping":
                continue
            event = frame.data
            events.append(event)
            started = [e for e in events if e["event"] == "node_started"]
            if len(started) == 4 and not asked:  # the start and the three models
                asked = time.monotonic()
                stop = parallel.client.post(
                    f"/workflows/tasks/{event['task_id']}/stop", json={"user": "wf-user"}
                )
                assert stop.status_code == 200 and stop.json()["result"] == "success"
    took = time.monotonic() - asked
    assert asked and took < 1.0, took
    stopped = [e["data"]["node_id"] for e in events if e["event"] == "node_finished"]
    assert sorted(stopped) == ["llm1", "llm2", "llm3", "start"]
    statuses = {
        e["data"]["node_id"]: e["data"]["status"] for e in events if e["event"] == "node_finished"
    }
    assert {statuses[n] for n in ("llm1", "llm2", "llm3")} == {"stopped"}
    assert events[-1]["event"] == "workflow_finished"
    assert events[-1]["data"]["status"] == "stopped"
    upstream.reset()
