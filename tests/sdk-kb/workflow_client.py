"""Dify's `WorkflowClient` (dify-python-sdk 0.1.16, unchanged; `dify-client` 0.1.10 has none)
against a running Conduit: run by `tests/e2e/test_dify_sdk_workflow.py` in a process whose path
starts with `.venv/sdk-kb`, as `python workflow_client.py BASE_URL APP_KEY APP_ID WORKFLOW_ID
UPSTREAM_URL` (an app of tests/e2e/workflows/parallel_llm.yml, published; UPSTREAM_URL the
fake model's control address). Each step asserts on what the SDK got back; the SDK's methods
whose routes are no Dify route print `missing <METHOD> <path>`; the last line is "ok"."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import dify_client
import httpx
from dify_client import WorkflowClient
from dify_client.exceptions import APIError

USER = "sdk-workflow-user"


def ok(response: Any) -> Any:
    assert response.status_code == 200, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    return response.json()


def sse_events(response: Any) -> list[dict[str, Any]]:
    """The events of a stream the SDK read whole (its `run` does not stream)."""
    assert response.status_code == 200, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("text/event-stream"), response.headers
    return [
        json.loads(line[len("data:") :])
        for line in response.text.splitlines()
        if line.startswith("data:")
    ]


def api_error(call: Callable[[], Any]) -> APIError:
    try:
        call()
    except APIError as error:
        return error
    raise AssertionError("the call succeeded")


def run_and_stop(client: WorkflowClient, base_url: str, key: str, upstream: str) -> str:
    """A streaming run whose models hang, stopped with the SDK's `stop` once they started;
    the run's id. (The SDK reads a stream whole, so the stream is followed with httpx.)"""
    httpx.post(f"{upstream}/control", json={"mode": "hang-before-first-token", "times": 3})
    events: list[dict[str, Any]] = []
    try:
        with httpx.stream(
            "POST",
            f"{base_url}/workflows/run",
            headers={"Authorization": f"Bearer {key}"},
            json={"inputs": {"topic": "bats"}, "user": USER, "response_mode": "streaming"},
            timeout=30,
        ) as response:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[len("data:") :])
                events.append(event)
                data = event.get("data") or {}
                started = [e for e in events if e["event"] == "node_started"]
                if data.get("node_type") == "llm" and len(started) == 2:
                    stopped = ok(client.stop(event["task_id"], USER))
                    assert stopped["result"] == "success", stopped
    finally:
        httpx.post(f"{upstream}/reset")
    assert events[-1]["event"] == "workflow_finished", events[-1]
    assert events[-1]["data"]["status"] == "stopped", events[-1]
    run_id: str = events[-1]["workflow_run_id"]
    return run_id


def main(base_url: str, key: str, app_id: str, workflow_id: str, upstream: str) -> None:
    print("sdk", dify_client.__file__)
    client = WorkflowClient(key, base_url=base_url)

    form = ok(client.get_application_parameters(USER))["user_input_form"]
    assert [list(item) for item in form] == [["text-input"]], form
    assert form[0]["text-input"]["variable"] == "topic", form
    print("parameters")

    blocking = ok(client.run({"topic": "cats"}, response_mode="blocking", user=USER))
    assert blocking["data"]["status"] == "succeeded", blocking
    assert blocking["data"]["outputs"]["poem"] == "You said: one poem about cats", blocking
    run_id = blocking["workflow_run_id"]
    events = sse_events(client.run({"topic": "dogs"}, response_mode="streaming", user=USER))
    assert events[0]["event"] == "workflow_started", events[0]
    assert events[-1]["event"] == "workflow_finished", events[-1]
    assert events[-1]["data"]["status"] == "succeeded", events[-1]
    chunks = "".join(e["data"]["text"] for e in events if e["event"] == "text_chunk")
    assert chunks == "You said: one poem about dogs", chunks
    print("run")

    result = ok(client.get_result(run_id))
    assert (result["id"], result["status"], result["workflow_id"]) == (
        run_id,
        "succeeded",
        workflow_id,
    ), result
    assert json.loads(result["inputs"]) == {"topic": "cats"}, result
    assert result["outputs"] == blocking["data"]["outputs"], result
    print("result")

    pinned = ok(client.run_specific_workflow(workflow_id, {"topic": "owls"}, "blocking", USER))
    assert pinned["data"]["workflow_id"] == workflow_id, pinned
    assert pinned["data"]["status"] == "succeeded", pinned
    pinned_events = sse_events(
        client.run_specific_workflow(workflow_id, {"topic": "eels"}, "streaming", USER)
    )
    assert pinned_events[-1]["data"]["status"] == "succeeded", pinned_events[-1]
    print("specific workflow")

    stopped_id = run_and_stop(client, base_url, key, upstream)
    assert ok(client.get_result(stopped_id))["status"] == "stopped"
    print("stop")

    logs = ok(client.get_workflow_logs())
    assert logs["total"] == 5 and logs["page"] == 1 and logs["limit"] == 20, logs
    assert logs["data"][0]["id"] == stopped_id and logs["data"][-1]["id"] == run_id, logs
    cats = ok(client.get_workflow_logs(keyword="cats", status="succeeded"))
    assert [item["id"] for item in cats["data"]] == [run_id], cats
    assert ok(client.get_workflow_logs(status="stopped"))["data"][0]["id"] == stopped_id
    paged = ok(client.get_workflow_logs(page=2, limit=2))
    assert (paged["page"], paged["limit"], paged["has_more"], len(paged["data"])) == (
        2,
        2,
        True,
        2,
    ), paged
    mine = ok(client.get_workflow_logs(created_by_end_user_session_id=USER))
    assert mine["total"] == 5, mine
    dated = ok(
        client.get_workflow_logs(
            created_at__after="2000-01-01T00:00:00Z", created_at__before="2100-01-01T00:00:00Z"
        )
    )
    assert dated["total"] == 5, dated
    print("logs")

    missing = api_error(lambda: client.get_result("not-a-run"))
    assert (missing.status_code, str(missing)) == (404, "Workflow run not found."), missing
    refused = api_error(lambda: client.run({}, response_mode="blocking", user=USER))
    assert (refused.status_code, str(refused)) == (400, "topic is required in input form")
    print("errors")

    # The SDK's own extras, on routes Dify's Service API does not have either.
    for name, call in (
        ("GET /apps/{id}/workflow/draft", lambda: client.get_workflow_draft(app_id)),
        ("PUT /apps/{id}/workflow/draft", lambda: client.update_workflow_draft(app_id, {})),
        ("POST /apps/{id}/workflow/publish", lambda: client.publish_workflow(app_id)),
        ("GET /apps/{id}/workflow/runs", lambda: client.get_workflow_run_history(app_id)),
    ):
        error = api_error(call)
        assert error.status_code == 404, (name, error.status_code, str(error))
        print("missing", name)
    client.close()
    print("ok")


if __name__ == "__main__":
    main(*sys.argv[1:6])
