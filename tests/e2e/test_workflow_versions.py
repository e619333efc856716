"""A published version of a workflow named in a Service API run, over HTTP (Dify's contract):
`workflow_id` in a chatflow's `POST /v1/chat-messages` and the path of `POST
/v1/workflows/{workflow_id}/run` run that version, not the latest; a malformed id and a draft's
are 400 `bad_request`, an unknown one 404, and none of them stores a message or a run. A run's
detail asked with a chat app's key is 400 `not_workflow_app`."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
import yaml

from tests import support
from tests.e2e.conftest import Admin, ServiceApp
from tests.e2e.test_workflow_runs import HERE, published_app


def republished(admin: Admin, app: ServiceApp, dsl: dict[str, Any], answer: str) -> None:
    """The draft's answer node changed to `answer`, then published as a new version."""
    graph = copy.deepcopy(dsl["workflow"]["graph"])
    for node in graph["nodes"]:
        if node["data"]["type"] == "answer":
            node["data"]["answer"] = answer
    path = f"/console/api/apps/{app.app_id}/workflows"
    draft = admin.client.get(f"{path}/draft").json()
    synced = admin.client.post(
        f"{path}/draft",
        json={
            "graph": graph,
            "features": dsl["workflow"].get("features") or {},
            "conversation_variables": dsl["workflow"].get("conversation_variables") or [],
            "hash": draft["hash"],
        },
    )
    assert synced.status_code == 200, synced.text
    assert admin.client.post(f"{path}/publish", json={}).status_code in (200, 201)


def ids(admin: Admin, app: ServiceApp) -> tuple[str, str]:
    """The app's latest published version and its draft."""
    path = f"/console/api/apps/{app.app_id}/workflows"
    return admin.client.get(f"{path}/publish").json()["id"], admin.client.get(
        f"{path}/draft"
    ).json()["id"]


def counts(stack: support.Stack, app_id: str) -> tuple[object, object]:
    return (
        stack.sql("SELECT count(*) FROM messages WHERE app_id = :a", a=app_id)[0][0],
        stack.sql("SELECT count(*) FROM workflow_runs WHERE app_id = :a", a=app_id)[0][0],
    )


@pytest.fixture
def chatflow(
    service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> tuple[ServiceApp, str]:
    """A chatflow published twice: first answering "Bot: …", then "Robot: …"; and the first
    version's id."""
    upstream.reset()
    dsl = yaml.safe_load((HERE / "chatflow_memory.yml").read_text())
    app = published_app(service_stack, service_admin, dsl)
    first, _ = ids(service_admin, app)
    republished(service_admin, app, dsl, "Robot: {{#llm.text#}}")
    return app, first


def ask(app: ServiceApp, **extra: Any) -> Any:
    body = {"inputs": {}, "query": "hi", "user": "v-user", "auto_generate_name": False, **extra}
    return app.client.post("/chat-messages", json=body)


def test_a_chatflow_turn_runs_the_published_version_it_names(
    chatflow: tuple[ServiceApp, str], service_admin: Admin
) -> None:
    app, first = chatflow
    latest = ask(app)
    assert latest.status_code == 200, latest.text
    assert latest.json()["answer"] == "Robot: You said: hi"
    named = ask(app, workflow_id=first)
    assert named.status_code == 200, named.text
    assert named.json()["answer"] == "Bot: You said: hi"
    # A later turn of that conversation may name the latest version again.
    again = ask(app, conversation_id=named.json()["conversation_id"], workflow_id="")
    assert again.json()["answer"] == "Robot: You said: hi"


def test_a_bad_workflow_id_is_refused_in_dify_words_and_stores_nothing(
    chatflow: tuple[ServiceApp, str], service_admin: Admin
) -> None:
    app, _ = chatflow
    _, draft = ids(service_admin, app)
    before = counts(app.stack, app.app_id)
    unknown = str(uuid.uuid4())
    for workflow_id, status, code, message in [
        ("v1", 400, "bad_request", "Invalid workflow_id format: 'v1'."),
        (
            draft,
            400,
            "bad_request",
            f"Cannot use draft workflow version. Workflow ID: {draft}. Please use a published "
            "workflow version or leave workflow_id empty.",
        ),
        (unknown, 404, "not_found", f"Workflow not found with id: {unknown}"),
        (42, 400, "invalid_param", "workflow_id must be a string"),
    ]:
        response = ask(app, workflow_id=workflow_id)
        assert response.status_code == status, response.text
        assert response.json()["code"] == code
        assert response.json()["message"] == message
    assert counts(app.stack, app.app_id) == before


def test_a_workflow_run_names_its_version_by_path(
    service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    dsl = yaml.safe_load((HERE / "branch_and_code.yml").read_text())
    app = published_app(service_stack, service_admin, dsl)
    published, draft = ids(service_admin, app)
    body = {"inputs": {"n": 3}, "user": "v-user"}
    before = counts(app.stack, app.app_id)
    for workflow_id, status, code in [
        ("not-a-uuid", 400, "bad_request"),
        (draft, 400, "bad_request"),
        (str(uuid.uuid4()), 404, "not_found"),
    ]:
        response = app.client.post(f"/workflows/{workflow_id}/run", json=body)
        assert response.status_code == status, response.text
        assert response.json()["code"] == code
    assert counts(app.stack, app.app_id) == before
    ran = app.client.post(f"/workflows/{published}/run", json=body)
    assert ran.status_code == 200, ran.text
    assert ran.json()["data"]["workflow_id"] == published
    assert ran.json()["data"]["status"] == "succeeded"


def test_a_run_detail_with_a_chat_apps_key_is_not_workflow_app(chat_app: ServiceApp) -> None:
    response = chat_app.client.get(f"/workflows/run/{uuid.uuid4()}")
    assert response.status_code == 400
    assert response.json()["code"] == "not_workflow_app"
