"""Dify's Python SDKs on a workflow app: `WorkflowClient` of dify-python-sdk 0.1.16 (the pinned
`dify-client` 0.1.10 has no workflow client; the newer SDK lives in `.venv/sdk-kb`, so its
calls run in a process of their own, `tests/sdk-kb/workflow_client.py`) runs the workflow
blocking and streaming, runs one version, stops a run, reads runs and logs; and 0.1.10's
`DifyClient` reads the workflow app's parameters."""

from __future__ import annotations

from typing import Any

from dify_client import DifyClient

from tests import support
from tests.e2e.conftest import Admin
from tests.e2e.test_dify_sdk_knowledge import run_sdk_script
from tests.e2e.test_workflow_logs import TOPIC_FORM
from tests.e2e.test_workflow_runs import workflow_app

# The SDK's methods whose routes neither Dify's Service API nor this server has.
NOT_DIFY_ROUTES = [
    "GET /apps/{id}/workflow/draft",
    "PUT /apps/{id}/workflow/draft",
    "POST /apps/{id}/workflow/publish",
    "GET /apps/{id}/workflow/runs",
]


def test_workflow_client_end_to_end(
    service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    upstream.reset()
    app = workflow_app(service_stack, service_admin, "parallel_llm.yml")
    app.client.close()
    published = service_admin.client.get(f"/console/api/apps/{app.app_id}/workflows/publish")
    assert published.status_code == 200, published.text
    base_url = f"{service_stack.base_url}/v1"
    workflow_id = published.json()["id"]
    lines = run_sdk_script(
        "workflow_client.py", base_url, app.key, app.app_id, workflow_id, upstream.url
    )
    missing = [line.removeprefix("missing ") for line in lines if line.startswith("missing ")]
    assert missing == NOT_DIFY_ROUTES


def test_the_pinned_sdk_reads_a_workflow_app_s_parameters(
    service_stack: support.Stack, service_admin: Admin
) -> None:
    app = workflow_app(service_stack, service_admin, "parallel_llm.yml")
    app.client.close()
    client = DifyClient(app.key)
    client.base_url = f"{service_stack.base_url}/v1"  # 0.1.10 hard-codes api.dify.ai
    with client.get_application_parameters("sdk-user") as response:
        assert response.status_code == 200, response.text
        assert response.json()["user_input_form"] == TOPIC_FORM
