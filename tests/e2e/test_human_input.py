"""Human-input nodes: a workflow run pauses on a form, a person answers it (Service API, web
tier or console) and the run resumes where it stopped — against a real server, in both modes
(`test_human_input_celery.py` runs them again on the `celery` executor)."""

from __future__ import annotations

import concurrent.futures
import copy
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests import support
from tests.e2e.conftest import Admin, ServiceApp
from tests.e2e.sse import frames
from tests.e2e.test_async_runs import poll
from tests.e2e.test_workflow_runs import published_app

HERE = Path(__file__).parent / "workflows"
STACK_ENV = {"CONDUIT_WORKFLOW_HUMAN_INPUT_SWEEP_SECONDS": "1"}
USER = "reviewer-1"


def approval_dsl(**review: Any) -> dict[str, Any]:
    dsl = yaml.safe_load((HERE / "approval.yml").read_text())
    for node in dsl["workflow"]["graph"]["nodes"]:
        if node["id"] == "review":
            node["data"].update(review)
    return dict(dsl)


@pytest.fixture
def approval(service_stack: support.Stack, service_admin: Admin) -> ServiceApp:
    return published_app(service_stack, service_admin, approval_dsl())


def run_blocking(app: ServiceApp, topic: str = "laptops", **extra: Any) -> dict[str, Any]:
    response = app.client.post(
        "/workflows/run", json={"inputs": {"topic": topic}, "user": USER, **extra}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def follow(app: ServiceApp, run_id: str, *, until: str = "workflow_finished") -> list[Any]:
    """The run's events (its current execution's) until `until`, re-reading as it resumes."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with app.client.stream(
            "GET", f"/workflow/{run_id}/events", params={"user": USER}, timeout=30
        ) as response:
            assert response.status_code == 200
            seen = list(frames(response))
        if any(f.event == until for f in seen):
            return seen
        time.sleep(0.2)  # paused still (the answer's resume not yet started)
    raise AssertionError(f"run {run_id} never reached {until}")


def test_a_run_pauses_on_its_form_and_an_answer_resumes_it(approval: ServiceApp) -> None:
    paused = run_blocking(approval)
    data = paused["data"]
    assert data["status"] == "paused" and data["paused_nodes"] == ["review"]
    assert data["finished_at"] is None and data["total_steps"] >= 2
    (reason,) = data["reasons"]
    assert reason["TYPE"] == "human_input_required" and reason["node_id"] == "review"
    token = reason["form_token"]
    run_id = paused["workflow_run_id"]
    assert approval.client.get(f"/workflows/run/{run_id}").json()["status"] == "paused"

    form = approval.client.get(f"/form/human_input/{token}")
    assert form.status_code == 200, form.text
    view = form.json()
    assert view["form_content"].startswith("Please review **laptops**.")
    assert "{{#$output.note#}}" in view["form_content"]  # filled once answered
    assert view["resolved_default_values"] == {"note": "laptops"}
    assert [a["id"] for a in view["user_actions"]] == ["approve", "reject"]
    assert view["expiration_time"] > time.time() + 35 * 3600

    answered = approval.client.post(
        f"/form/human_input/{token}",
        json={"inputs": {"note": "ship it", "size": "large"}, "action": "approve", "user": USER},
    )
    assert answered.status_code == 200 and answered.json() == {}, answered.text
    events = follow(approval, run_id)
    names = [f.event for f in events]
    assert names[0] == "workflow_started" and events[0].data["data"]["reason"] == "resumption"
    assert "human_input_form_filled" in names
    filled = next(f.data["data"] for f in events if f.event == "human_input_form_filled")
    assert filled["action_id"] == "approve" and filled["action_text"] == "Approve"
    assert filled["rendered_content"].endswith("Note: ship it")
    finished = events[-1].data["data"]
    assert finished["status"] == "succeeded", finished
    # The side branch ran before the pause; the resumed run took its output as it was.
    assert finished["outputs"] == {"result": "approved laptops (large): ship it / prepared laptops"}
    ran = {f.data["data"]["node_id"] for f in events if f.event == "node_started"}
    assert ran == {"review", "shipped", "end_ok"}  # start and side were not run again
    assert approval.client.get(f"/workflows/run/{run_id}").json()["status"] == "succeeded"

    again = approval.client.post(
        f"/form/human_input/{token}",
        json={"inputs": {"note": "x", "size": "small"}, "action": "reject", "user": USER},
    )
    assert again.status_code == 412
    assert again.json()["code"] == "human_input_form_submitted"
    assert approval.client.get(f"/form/human_input/{token}").status_code == 412


def test_the_stream_ends_with_the_form_and_the_pause(approval: ServiceApp) -> None:
    with approval.client.stream(
        "POST",
        "/workflows/run",
        json={"inputs": {"topic": "chairs"}, "user": USER, "response_mode": "streaming"},
    ) as response:
        seen = list(frames(response))
    names = [f.event for f in seen if f.event != "ping"]
    assert names[-2:] == ["human_input_required", "workflow_paused"]
    required = seen[-2].data["data"]
    assert required["node_id"] == "review" and required["form_token"]
    assert required["actions"][0] == {
        "id": "approve",
        "title": "Approve",
        "button_style": "primary",
    }
    assert required["display_in_ui"] is True
    finished_nodes = [f.data["data"]["node_id"] for f in seen if f.event == "node_finished"]
    assert "side" in finished_nodes and "review" not in finished_nodes
    # Read again after the pause, the run's events end the same way.
    run_id = seen[-1].data["workflow_run_id"]
    replay = follow(approval, run_id, until="workflow_paused")
    assert [f.event for f in replay][-2:] == ["human_input_required", "workflow_paused"]


def test_a_rejection_takes_its_own_branch(approval: ServiceApp) -> None:
    paused = run_blocking(approval, "desks")
    token = paused["data"]["reasons"][0]["form_token"]
    answered = approval.client.post(
        f"/form/human_input/{token}",
        json={"inputs": {"note": "", "size": "small"}, "action": "reject", "user": USER},
    )
    assert answered.status_code == 200
    events = follow(approval, paused["workflow_run_id"])
    assert events[-1].data["data"]["outputs"] == {"result": "rejected by Reject"}


def test_an_answer_that_does_not_fit_is_refused_and_changes_nothing(approval: ServiceApp) -> None:
    paused = run_blocking(approval, "lamps")
    token = paused["data"]["reasons"][0]["form_token"]

    def answer(body: dict[str, Any]) -> httpx.Response:
        return approval.client.post(f"/form/human_input/{token}", json={"user": USER, **body})

    cases = [
        ({"inputs": {"note": "a", "size": "small"}, "action": "maybe"}, "Invalid action: maybe"),
        ({"inputs": {"note": "a"}, "action": "approve"}, "Missing required inputs: size"),
        (
            {"inputs": {"note": "a", "size": "huge"}, "action": "approve"},
            "Input size: 'huge' is not one of its choices",
        ),
        (
            {"inputs": {"note": "a", "size": "small", "extra": 1}, "action": "approve"},
            "Unknown inputs: extra",
        ),
        ({"inputs": {"note": 5, "size": "small"}, "action": "approve"}, "Input note must be text"),
    ]
    for body, message in cases:
        refused = answer(body)
        assert refused.status_code == 400, refused.text
        assert refused.json() == {"code": "invalid_form_data", "message": message, "status": 400}
    no_user = approval.client.post(
        f"/form/human_input/{token}", json={"inputs": {}, "action": "approve"}
    )
    assert no_user.status_code == 400 and "user" in no_user.json()["message"]
    assert approval.client.get(f"/form/human_input/{token}").status_code == 200  # still open
    run = approval.client.get(f"/workflows/run/{paused['workflow_run_id']}").json()
    assert run["status"] == "paused"
    assert approval.client.get("/form/human_input/no-such-token").status_code == 404


def test_two_answers_at_once_resume_the_run_once(approval: ServiceApp) -> None:
    paused = run_blocking(approval, "pens")
    token = paused["data"]["reasons"][0]["form_token"]

    def answer(action: str) -> int:
        with httpx.Client(base_url=approval.client.base_url, headers=approval.client.headers) as c:
            return c.post(
                f"/form/human_input/{token}",
                json={"inputs": {"note": action, "size": "small"}, "action": action, "user": USER},
            ).status_code

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(answer, ["approve", "reject", "approve", "reject"]))
    assert codes == [200, 412, 412, 412], codes
    events = follow(approval, paused["workflow_run_id"])
    assert [f.event for f in events].count("workflow_started") == 1
    assert events[-1].data["data"]["status"] == "succeeded"


def test_a_paused_run_is_stopped_and_its_form_closed(approval: ServiceApp) -> None:
    paused = run_blocking(approval, "cups")
    token = paused["data"]["reasons"][0]["form_token"]
    stopped = approval.client.post(
        f"/workflows/tasks/{paused['task_id']}/stop", json={"user": "somebody-else"}
    )
    assert stopped.json()["stopped"] is False  # not theirs
    stopped = approval.client.post(
        f"/workflows/tasks/{paused['task_id']}/stop", json={"user": USER}
    )
    assert stopped.status_code == 200 and stopped.json()["stopped"] is True
    run = approval.client.get(f"/workflows/run/{paused['workflow_run_id']}").json()
    assert run["status"] == "stopped" and run["finished_at"] is not None
    closed = approval.client.get(f"/form/human_input/{token}")
    assert closed.status_code == 412 and closed.json()["code"] == "human_input_form_expired"
    (ended,) = follow(approval, paused["workflow_run_id"])  # its stored end, no longer paused
    assert ended.data["data"]["status"] == "stopped"
    late = approval.client.post(
        f"/form/human_input/{token}",
        json={"inputs": {"note": "a", "size": "small"}, "action": "approve", "user": USER},
    )
    assert late.status_code == 412


def test_a_form_out_of_time_takes_the_timeout_branch(
    service_stack: support.Stack, service_admin: Admin
) -> None:
    quick = published_app(service_stack, service_admin, approval_dsl(timeout=0.0005))  # 1.8 s
    paused = run_blocking(quick, "clocks")
    token = paused["data"]["reasons"][0]["form_token"]
    events = follow(quick, paused["workflow_run_id"])
    names = [f.event for f in events]
    assert "human_input_form_timeout" in names
    assert events[-1].data["data"]["outputs"] == {"result": "nobody answered"}
    late = quick.client.post(
        f"/form/human_input/{token}",
        json={"inputs": {"note": "a", "size": "small"}, "action": "approve", "user": USER},
    )
    assert late.status_code == 412 and late.json()["code"] == "human_input_form_expired"


def test_forms_belong_to_their_app_and_the_web_tier_reads_them_by_token(
    approval: ServiceApp, service_stack: support.Stack, service_admin: Admin
) -> None:
    other = published_app(service_stack, service_admin, approval_dsl())
    paused = run_blocking(approval, "mugs")
    token = paused["data"]["reasons"][0]["form_token"]
    assert other.client.get(f"/form/human_input/{token}").status_code == 404
    refused = other.client.post(
        f"/form/human_input/{token}",
        json={"inputs": {"note": "a", "size": "small"}, "action": "approve", "user": USER},
    )
    assert refused.status_code == 404
    with httpx.Client(base_url=service_stack.base_url, timeout=30) as web:
        page = web.get(f"/api/form/human_input/{token}")
        assert page.status_code == 200, page.text
        assert page.json()["site"]["title"] and page.json()["user_actions"]
        with_user = web.post(
            f"/api/form/human_input/{token}",
            json={"inputs": {"note": "web", "size": "small"}, "action": "approve", "user": "x"},
        )
        assert with_user.status_code == 400
        done = web.post(
            f"/api/form/human_input/{token}",
            json={"inputs": {"note": "web", "size": "small"}, "action": "approve"},
        )
        assert done.status_code == 200, done.text
    events = follow(approval, paused["workflow_run_id"])
    assert events[-1].data["data"]["outputs"]["result"].startswith("approved mugs (small): web")


def test_a_console_member_answers_a_draft_run_s_form(
    approval: ServiceApp, service_admin: Admin
) -> None:
    with service_admin.client.stream(
        "POST",
        f"/console/api/apps/{approval.app_id}/workflows/draft/run",
        json={"inputs": {"topic": "draft"}},
    ) as response:
        seen = [f for f in frames(response) if f.event != "ping"]
    assert seen[-1].event == "workflow_paused"
    token = seen[-2].data["data"]["form_token"]
    read = service_admin.client.get(f"/console/api/form/human_input/{token}")
    assert read.status_code == 200 and read.json()["form_content"].startswith("Please review")
    answered = service_admin.client.post(
        f"/console/api/form/human_input/{token}",
        json={"inputs": {"note": "from the console", "size": "small"}, "action": "approve"},
    )
    assert answered.status_code == 200, answered.text
    run_id = seen[-1].data["workflow_run_id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = service_admin.client.get(
            f"/console/api/apps/{approval.app_id}/workflow-runs/{run_id}"
        ).json()
        if run["status"] == "succeeded":
            break
        time.sleep(0.2)
    assert run["status"] == "succeeded", run
    nodes = service_admin.client.get(
        f"/console/api/apps/{approval.app_id}/workflow-runs/{run_id}/node-executions"
    ).json()["data"]
    review = [n for n in nodes if n["node_id"] == "review"]
    assert len(review) == 1 and review[0]["status"] == "succeeded"  # the paused record replaced


def test_a_graph_that_cannot_pause_is_refused_naming_the_node(
    service_admin: Admin, approval: ServiceApp
) -> None:
    base = approval_dsl()

    def draft(app_id: str, dsl: dict[str, Any]) -> httpx.Response:
        return service_admin.client.post(
            f"/console/api/apps/{app_id}/workflows/draft",
            json={"graph": dsl["workflow"]["graph"], "features": {}},
        )

    stray = copy.deepcopy(base)
    stray["workflow"]["graph"]["edges"][2]["sourceHandle"] = "ship"
    refused = draft(approval.app_id, stray)
    assert refused.status_code == 400
    assert "node 'review' (Review): an edge leaves through 'ship'" in refused.json()["message"]
    mailed = approval_dsl(delivery_methods=[{"id": "d", "type": "email", "enabled": True}])
    refused = draft(approval.app_id, mailed)
    assert refused.status_code == 400 and "email delivery" in refused.json()["message"]
    chatflow = service_admin.client.post(
        "/console/api/apps", json={"name": "Chat approval", "mode": "advanced-chat"}
    ).json()["data"]["id"]
    refused = draft(chatflow, base)
    assert refused.status_code == 400
    assert "human-input nodes run in workflow apps" in refused.json()["message"]


def test_a_repeat_under_the_same_key_gives_the_paused_run(approval: ServiceApp) -> None:
    headers = {"Idempotency-Key": f"pause-{time.time_ns()}"}
    first = approval.client.post(
        "/workflows/run", json={"inputs": {"topic": "keys"}, "user": USER}, headers=headers
    ).json()
    again = approval.client.post(
        "/workflows/run", json={"inputs": {"topic": "keys"}, "user": USER}, headers=headers
    )
    assert again.status_code == 200
    assert again.json()["workflow_run_id"] == first["workflow_run_id"]
    assert again.json()["data"]["status"] == "paused"


def test_an_async_run_shows_paused_then_ends_once_answered(approval: ServiceApp) -> None:
    body = {"inputs": {"topic": "async"}, "user": USER, "response_mode": "async"}
    key = {"Idempotency-Key": f"async-pause-{time.time_ns()}"}
    accepted = approval.client.post("/workflows/run", json=body, headers=key)
    assert accepted.status_code == 202, accepted.text
    status_url = accepted.json()["status_url"]
    task = poll(approval.client, status_url)  # (returns once neither pending nor running)
    # While it waits, its result is the paused body a blocking run gives: the form's token.
    assert task["status"] == "paused", task
    assert task["result"]["data"]["status"] == "paused" and task["finished_at"] is None
    token = task["result"]["data"]["reasons"][0]["form_token"]
    answered = approval.client.post(
        f"/form/human_input/{token}",
        json={"inputs": {"note": "later", "size": "small"}, "action": "approve", "user": USER},
    )
    assert answered.status_code == 200
    task = poll(approval.client, status_url)
    assert task["status"] == "succeeded", task
    assert task["result"]["data"]["outputs"]["result"].startswith("approved async (small): later")
    assert task["result"]["task_id"] == accepted.json()["task_id"]
    # A repeat under the key names the same task (its resumed execution ran under another id).
    again = approval.client.post("/workflows/run", json=body, headers=key)
    assert again.status_code == 202, again.text
    assert again.json()["task_id"] == accepted.json()["task_id"]
    assert again.json()["status"] == "succeeded"


def test_a_node_too_big_to_store_whole_is_not_run_again_when_the_run_resumes(
    service_stack: support.Stack, service_admin: Admin
) -> None:
    dsl = approval_dsl()
    graph = dsl["workflow"]["graph"]
    graph["nodes"].append(
        {
            "id": "big",
            "data": {
                "type": "code",
                "title": "Big",
                "code_language": "python3",
                "code": 'def main(topic):\n    return {"text": topic * 40000}\n',
                "variables": [{"variable": "topic", "value_selector": ["start", "topic"]}],
                "outputs": {"text": {"type": "string", "children": None}},
            },
        }
    )
    for node in graph["nodes"]:
        if node["id"] == "side":  # the side branch now reads the big output
            node["data"]["template"] = "{{ big | length }}"
            node["data"]["variables"] = [{"variable": "big", "value_selector": ["big", "text"]}]
    graph["edges"] = [e for e in graph["edges"] if e["target"] != "side"]
    graph["edges"] += [
        {"id": "eb", "source": "start", "target": "big", "sourceHandle": "source"},
        {"id": "es", "source": "big", "target": "side", "sourceHandle": "source"},
    ]
    app = published_app(service_stack, service_admin, dsl)
    paused = run_blocking(app, "ab")  # 80,000 characters: stored cut
    token = paused["data"]["reasons"][0]["form_token"]
    answered = app.client.post(
        f"/form/human_input/{token}",
        json={"inputs": {"note": "n", "size": "small"}, "action": "approve", "user": USER},
    )
    assert answered.status_code == 200
    events = follow(app, paused["workflow_run_id"])
    assert events[-1].data["data"]["outputs"] == {"result": "approved ab (small): n / 80000"}
    ran = [f.data["data"]["node_id"] for f in events if f.event == "node_started"]
    assert "big" not in ran and "side" not in ran  # taken up from the paused run's spec
    nodes = service_admin.client.get(
        f"/console/api/apps/{app.app_id}/workflow-runs/{paused['workflow_run_id']}/node-executions"
    ).json()["data"]
    assert [n["node_id"] for n in nodes].count("big") == 1
