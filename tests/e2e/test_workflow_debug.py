"""The console's workflow debugger: the draft runs (not the published version) as the signed-in
account, streaming its node events; a chatflow's draft answers a turn; one node runs alone
with the values it reads."""

from __future__ import annotations

from typing import Any

import pytest

from tests import support
from tests.e2e.conftest import Admin, ServiceApp
from tests.e2e.sse import frames
from tests.e2e.test_workflow_runs import workflow_app


@pytest.fixture
def branching(service_stack: support.Stack, service_admin: Admin) -> ServiceApp:
    return workflow_app(service_stack, service_admin, "branch_and_code.yml")


def debug_stream(admin: Admin, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with admin.client.stream("POST", path, json=body) as response:
        assert response.status_code == 200, response.read()
        return [frame.data for frame in frames(response) if frame.event != "ping"]


def test_a_draft_run_runs_the_draft_and_streams_its_nodes(
    branching: ServiceApp, service_admin: Admin
) -> None:
    app_path = f"/console/api/apps/{branching.app_id}"
    draft = service_admin.client.get(f"{app_path}/workflows/draft").json()
    graph = draft["graph"]
    small = next(n for n in graph["nodes"] if n["id"] == "small")
    small["data"]["template"] = "draft says {{ n }}"
    synced = service_admin.client.post(
        f"{app_path}/workflows/draft",
        json={
            "graph": graph,
            "features": draft["features"],
            "environment_variables": draft["environment_variables"],
            "conversation_variables": draft["conversation_variables"],
            "hash": draft["hash"],
        },
    )
    assert synced.status_code == 200, synced.text
    events = debug_stream(service_admin, f"{app_path}/workflows/draft/run", {"inputs": {"n": 2}})
    assert events[0]["event"] == "workflow_started"
    assert events[-1]["data"]["outputs"] == {"answer": "draft says 2"}
    # Followed again (as the page does after a reload): the same events, from the first, or
    # after the one a Last-Event-ID names; an unknown run is a 404.
    run_id = events[0]["workflow_run_id"]
    with service_admin.client.stream("GET", f"{app_path}/workflow-runs/{run_id}/events") as again:
        assert again.status_code == 200
        replayed = [(f.id, f.data) for f in frames(again) if f.event != "ping"]
    assert [data for _, data in replayed] == events
    with service_admin.client.stream(
        "GET",
        f"{app_path}/workflow-runs/{run_id}/events",
        headers={"Last-Event-ID": str(replayed[1][0])},
    ) as rest:
        assert [f.data for f in frames(rest) if f.event != "ping"] == events[2:]
    unknown = service_admin.client.get(
        f"{app_path}/workflow-runs/0b6c31a0-8a4c-4b8e-9c51-5e0c2a1d7f11/events"
    )
    assert unknown.status_code == 404, unknown.text
    # The Service API still runs the published version.
    published = branching.client.post(
        "/workflows/run", json={"inputs": {"n": 2}, "user": "svc"}
    ).json()
    assert published["data"]["outputs"] == {"answer": "Hello, 2 is small"}
    history = service_admin.client.get(f"{app_path}/workflow-runs")
    assert history.status_code == 200, history.text
    assert len(history.json()["data"]) == 2  # the draft's run and the Service API's


def test_one_node_runs_alone_with_the_values_it_reads(
    branching: ServiceApp, service_admin: Admin
) -> None:
    path = f"/console/api/apps/{branching.app_id}/workflows/draft/nodes"
    ran = service_admin.client.post(
        f"{path}/double/run", json={"inputs": {"#start.n#": 7, "start.boom": ""}}
    )
    assert ran.status_code == 200, ran.text
    node = ran.json()
    assert node["status"] == "succeeded" and node["outputs"] == {"result": 14}
    assert node["node_type"] == "code" and node["inputs"] == {"n": 7, "boom": ""}
    failed = service_admin.client.post(
        f"{path}/double/run", json={"inputs": {"#start.n#": 7, "#start.boom#": "x"}}
    ).json()
    assert failed["status"] == "failed" and "asked to fail: x" in failed["error"]
    missing = service_admin.client.post(f"{path}/nowhere/run", json={"inputs": {}})
    assert missing.status_code == 400 and "nowhere" in missing.json()["message"]


def test_a_chatflow_draft_answers_a_turn(
    service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    upstream.reset()
    chatflow = workflow_app(service_stack, service_admin, "chatflow_memory.yml")
    events = debug_stream(
        service_admin,
        f"/console/api/apps/{chatflow.app_id}/advanced-chat/workflows/draft/run",
        {"inputs": {}, "query": "from the console"},
    )
    answer = "".join(e["answer"] for e in events if e["event"] == "message")
    assert answer == "Bot: You said: from the console"
    assert [e["event"] for e in events][-2:] == ["message_end", "workflow_finished"]
