"""Async workflow runs (`response_mode: "async"` on `/v1/workflows/run`): 202 at once, the run
queued on the `generation` queue, its task polled to the blocking body a blocking run gives,
its signed callback delivered once — the async machinery of chat runs, wired to workflows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from conduit.webhooks import verify
from tests import support
from tests.e2e.conftest import Admin, ServiceApp
from tests.e2e.test_async_callbacks import STACK_ENV, secret_of, wait_callbacks
from tests.e2e.test_async_runs import poll
from tests.e2e.test_workflow_runs import workflow_app
from tests.fakes.webhook_receiver import WebhookReceiver, webhook_receiver

__all__ = ["STACK_ENV"]


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as started:
        yield started


@pytest.fixture
def branching(service_stack: support.Stack, service_admin: Admin) -> ServiceApp:
    return workflow_app(service_stack, service_admin, "branch_and_code.yml")


def submit(app: ServiceApp, inputs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    response = app.client.post(
        "/workflows/run",
        json={"inputs": inputs, "user": "wf-async", "response_mode": "async", **extra},
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "pending" and set(accepted) == {"task_id", "status", "status_url"}
    return dict(accepted)


def test_an_async_run_ends_with_the_blocking_body_and_calls_back_once(
    branching: ServiceApp, service_admin: Admin, receiver: WebhookReceiver
) -> None:
    accepted = submit(branching, {"n": 21}, callback_url=f"{receiver.url}/hook")
    task = poll(branching.client, accepted["status_url"])
    assert task["status"] == "succeeded", task
    result = task["result"]
    assert result["task_id"] == accepted["task_id"]
    assert result["data"]["status"] == "succeeded" and result["data"]["outputs"] == {"answer": 42}
    blocking = branching.client.post(
        "/workflows/run", json={"inputs": {"n": 21}, "user": "wf-async"}
    ).json()
    assert set(blocking) == set(result) and set(blocking["data"]) == set(result["data"])
    (callback,) = wait_callbacks(receiver, accepted["task_id"], 1)
    verify(secret_of(service_admin, branching.app_id), callback.headers, callback.body)
    payload = orjson.loads(callback.body)
    assert payload["status"] == "succeeded" and payload["output"] == result


def test_a_failed_async_run_reports_its_error(branching: ServiceApp) -> None:
    accepted = submit(branching, {"n": 50, "boom": "late"})
    task = poll(branching.client, accepted["status_url"])
    assert task["status"] == "failed", task
    assert task["result"]["data"]["status"] == "failed"
    assert "asked to fail: late" in task["result"]["data"]["error"]


def test_bad_async_input_is_refused_before_anything_is_stored(branching: ServiceApp) -> None:
    response = branching.client.post(
        "/workflows/run", json={"inputs": {}, "user": "wf-async", "response_mode": "async"}
    )
    assert response.status_code == 400
    assert response.json()["message"] == "n is required in input form"
    private = branching.client.post(
        "/workflows/run",
        json={
            "inputs": {"n": 1},
            "user": "wf-async",
            "response_mode": "async",
            "callback_url": "http://10.0.0.5/hook",
        },
    )
    assert private.status_code == 400 and "private" in private.json()["message"]
