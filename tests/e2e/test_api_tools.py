"""Custom API tools (Dify's "custom tools"): a workspace's OpenAPI 3 document of its own
service (here a real HTTP server, `tests/fakes/http_echo.py`, answering with what it got),
through the console's `/workspaces/current/tool-provider/api/*` routes (schema, add, get,
update, delete, test), and its operations called by an agent (the fake model calls the
function a message names): path, query, header and JSON body filled from the call, the
provider's key sent, every call behind the SSRF guard; a service's error is the model's
observation. Both modes (`CONDUIT_TEST_MODE`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests import support
from tests.e2e.conftest import Admin, add_member, make_admin, service_app
from tests.e2e.test_agent import answer, streamed, thoughts
from tests.e2e.test_workflow_runs import published_app
from tests.fakes.http_echo import HttpEcho, http_echo

assert_envelope = support.assert_envelope
API = "/console/api/workspaces/current/tool-provider/api"
STACK_ENV = {"CONDUIT_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}  # the test's own service
KEY = "sk-orders-7f3a9c"


def document(base_url: str) -> dict[str, Any]:
    return {
        "openapi": "3.0.1",
        "info": {"title": "Orders", "version": "1"},
        "servers": [{"url": base_url}],
        "paths": {
            "/echo/orders/{order_id}": {
                "get": {
                    "operationId": "get_order",
                    "summary": "An order by its id",
                    "parameters": [
                        {"name": "order_id", "in": "path", "required": True,
                         "schema": {"type": "string"}},
                        {"name": "verbose", "in": "query", "schema": {"type": "boolean"}},
                        {"name": "X-Shop", "in": "header", "schema": {"type": "string"}},
                    ],
                }
            },
            "/echo/orders": {
                "post": {
                    "operationId": "create_order",
                    "description": "Create an order",
                    "requestBody": {"content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Order"}}}},
                }
            },
            "/status/{code}": {
                "get": {
                    "operationId": "fail_with",
                    "parameters": [{"name": "code", "in": "path", "schema": {"type": "integer"}}],
                }
            },
        },
        "components": {"schemas": {"Order": {
            "type": "object", "required": ["item"],
            "properties": {"item": {"type": "string", "description": "What to order"},
                           "quantity": {"type": "integer"}, "notes": {"type": "object"}},
        }}},
    }  # fmt: skip


def provider_body(base_url: str, name: str = "Orders", **changes: Any) -> dict[str, Any]:
    return {
        "provider": name,
        "icon": {"background": "#FEF7C3", "content": "📦"},
        "schema_type": "openapi",
        "schema": yaml.safe_dump(document(base_url), sort_keys=False),
        "credentials": {
            "auth_type": "api_key",
            "api_key_header": "Authorization",
            "api_key_header_prefix": "bearer",
            "api_key_value": KEY,
        },
        "privacy_policy": "",
        "custom_disclaimer": "",
        "labels": [],
        **changes,
    }


@pytest.fixture(scope="module")
def service() -> Iterator[HttpEcho]:
    with http_echo() as server:
        yield server


@pytest.fixture
def orders(service_admin: Admin, service: HttpEcho) -> Iterator[dict[str, Any]]:
    """The workspace's Orders provider (made through the console), as `/api/get` shows it."""
    added = service_admin.client.post(f"{API}/add", json=provider_body(service.base_url))
    assert added.status_code == 200, added.text
    found = service_admin.client.get(f"{API}/get", params={"provider": "Orders"}).json()
    yield found
    removed = service_admin.client.post(f"{API}/delete", json={"provider": "Orders"})
    assert removed.status_code == 200, removed.text


def agent_with(service_stack: support.Stack, admin: Admin, *tools: dict[str, Any]) -> Any:
    return service_app(
        service_stack,
        admin,
        mode="agent-chat",
        pre_prompt="You are a careful assistant.",
        agent_mode={"enabled": True, "strategy": "function_call",
                    "tools": [{**t, "enabled": True} for t in tools]},
    )  # fmt: skip


def test_a_schema_is_read_into_its_operations(service_admin: Admin, service: HttpEcho) -> None:
    read = service_admin.client.post(
        f"{API}/schema", json={"schema": json.dumps(document(service.base_url))}
    )
    assert read.status_code == 200, read.text
    tools = {t["operation_id"]: t for t in read.json()["parameters_schema"]}
    assert list(tools) == ["get_order", "create_order", "fail_with"]
    assert tools["get_order"]["server_url"] == service.base_url
    assert [(p["name"], p["in"], p["type"], p["required"]) for p in tools["get_order"]["parameters"]] == [
        ("order_id", "path", "string", True),
        ("verbose", "query", "boolean", False),
        ("X-Shop", "header", "string", False),
    ]  # fmt: skip
    body = {p["name"]: (p["type"], p["required"]) for p in tools["create_order"]["parameters"]}
    assert body == {"item": ("string", True), "quantity": ("number", False),
                    "notes": ("json", False)}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda d: d.pop("openapi") and d.update(swagger="2.0"), "openapi must be a 3.x version"),
        (lambda d: d.pop("servers"), "servers[0].url is required"),
        (lambda d: d.update(servers=[{"url": "/api"}]), "must be an absolute http(s) URL"),
        (lambda d: d.update(paths={}), "paths must list at least one operation"),
        (
            lambda d: d["paths"]["/status/{code}"]["get"].update(operationId="get_order"),
            "operationId 'get_order' is used more than once",
        ),
        (
            lambda d: d["components"].update(schemas={}),
            "$ref '#/components/schemas/Order' points to nothing",
        ),
        (lambda d: d.update(servers={"url": "http://x"}), "servers[0].url is required"),
        (lambda d: d.update(servers=["http://x"]), "servers[0].url is required"),
        (lambda d: d.update(servers=[{"url": "http://[x"}]), "schema:"),
        (
            lambda d: d.update(servers=[{"url": "http://x/api?key=1"}]),
            "must name only a host, a port and a path",
        ),
        (
            lambda d: d.update(servers=[{"url": "{scheme}://x"}]),
            "must be an absolute http(s) URL",
        ),
        (
            lambda d: d["paths"].update({".attacker.example/x": {"get": {"operationId": "steal"}}}),
            "path '.attacker.example/x' must start with /",
        ),
        (
            lambda d: d["paths"]["/status/{code}"]["get"].update(parameters=5),
            "parameters must be a list",
        ),
    ],
)
def test_a_schema_that_cannot_be_served_is_a_400_naming_why(
    service_admin: Admin, service: HttpEcho, change: Any, says: str
) -> None:
    broken = document(service.base_url)
    change(broken)
    read = service_admin.client.post(f"{API}/schema", json={"schema": json.dumps(broken)})
    assert_envelope(read, 400, "invalid_param", says)
    added = service_admin.client.post(
        f"{API}/add", json=provider_body(service.base_url, schema=json.dumps(broken))
    )
    assert_envelope(added, 400, "invalid_param", says)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[" * 200_000, "schema:"),
        ("openapi: 3.0.0\nservers: &s [{url: 'http://x'}]\nother: *s\npaths: {}", "anchors"),
        (json.dumps({"openapi": "3.0.0", "servers": [{"url": "http://x"}], "paths": {
            "/a": {"get": {"operationId": "a", "parameters": [
                {"name": "n", "in": "query", "schema": {"type": "integer", "default": 2**70}}]}}}}),
         None),
        ("- just\n- a list", "must be an OpenAPI 3 document"),
    ],
)  # fmt: skip
def test_odd_documents_are_read_or_refused_never_a_500(
    service_admin: Admin, text: str, says: str | None
) -> None:
    read = service_admin.client.post(f"{API}/schema", json={"schema": text})
    if says is None:  # a default past 64 bits is left out
        assert read.status_code == 200, read.text
        (parameter,) = read.json()["parameters_schema"][0]["parameters"]
        assert parameter["default"] is None
    else:
        assert_envelope(read, 400, "invalid_param", says)


def test_a_provider_is_added_read_changed_and_deleted(
    service_admin: Admin, service: HttpEcho, service_stack: support.Stack
) -> None:
    client = service_admin.client
    assert client.post(f"{API}/add", json=provider_body(service.base_url)).status_code == 200
    again = client.post(f"{API}/add", json=provider_body(service.base_url))
    assert_envelope(again, 409, "conflict", "already called 'Orders'")
    found = client.get(f"{API}/get", params={"provider": "Orders"}).json()
    assert (
        found["credentials"]["api_key_value"] != KEY
        and KEY[-4:] in found["credentials"]["api_key_value"]
    )
    assert [t["operation_id"] for t in found["tools"]] == ["get_order", "create_order", "fail_with"]
    listed = client.get("/console/api/workspaces/current/tool-providers").json()
    mine = next(p for p in listed if p["type"] == "api")
    assert (mine["id"], mine["name"], mine["icon"]["content"]) == (found["id"], "Orders", "📦")
    assert [t["name"] for t in client.get(f"{API}/tools", params={"provider": "Orders"}).json()] == [
        "get_order", "create_order", "fail_with",
    ]  # fmt: skip
    # Renamed, the key kept ([__HIDDEN__]) for the same server; another server needs it again.
    hidden = {**provider_body(service.base_url, "Shop orders"), "original_provider": "Orders"}
    hidden["credentials"] = {**hidden["credentials"], "api_key_value": "[__HIDDEN__]"}
    assert client.post(f"{API}/update", json=hidden).status_code == 200
    moved = json.loads(json.dumps(hidden))
    moved["original_provider"] = "Shop orders"
    moved["schema"] = yaml.safe_dump(document("http://127.0.0.1:9"))
    assert_envelope(
        client.post(f"{API}/update", json=moved), 400, "invalid_param", "give the key again"
    )
    # A member who is not an editor reads, and is refused a change.
    viewer = add_member(service_stack, service_admin, "normal")
    try:
        assert (
            viewer.client.get(f"{API}/get", params={"provider": "Shop orders"}).status_code == 200
        )
        refused = viewer.client.post(f"{API}/delete", json={"provider": "Shop orders"})
        assert refused.status_code == 403, refused.text
        refused = viewer.client.post(f"{API}/add", json=provider_body(service.base_url, "Mine"))
        assert refused.status_code == 403, refused.text
    finally:
        viewer.client.close()
    # Dify's console sends the masked key back as it was shown: the stored key is kept.
    shown = client.get(f"{API}/get", params={"provider": "Shop orders"}).json()
    masked = {**provider_body(service.base_url, "Shop orders"), "original_provider": "Shop orders"}
    masked["credentials"] = {**masked["credentials"],
                             "api_key_value": shown["credentials"]["api_key_value"]}  # fmt: skip
    assert client.post(f"{API}/update", json=masked).status_code == 200
    tried = client.post(
        f"{API}/test/pre",
        json={**masked, "provider_name": "Shop orders", "tool_name": "get_order",
              "parameters": {"order_id": "K"}},
    )  # fmt: skip
    assert json.loads(tried.json()["result"])["headers"]["authorization"] == f"Bearer {KEY}"
    # A key that cannot go in a header, a header that is not one: refused when saved.
    for credentials, says in [
        ({"api_key_value": "sk-1\nX-Evil: 1"}, "must be printable ASCII"),
        ({"api_key_header": "X Key:"}, "must be an HTTP header's name"),
    ]:
        bad = {**masked, "credentials": {**masked["credentials"], **credentials}}
        assert_envelope(client.post(f"{API}/update", json=bad), 400, "invalid_param", says)
    assert client.post(f"{API}/delete", json={"provider": "Shop orders"}).status_code == 200
    assert_envelope(
        client.get(f"{API}/get", params={"provider": "Shop orders"}), 404, "not_found", "Shop"
    )


def test_an_operation_is_tried_before_it_is_saved(service_admin: Admin, service: HttpEcho) -> None:
    body = {
        **provider_body(service.base_url, "Draft"),
        "tool_name": "get_order",
        "provider_name": "Draft",
        "parameters": {"order_id": "A-1", "verbose": True},
    }
    tried = service_admin.client.post(f"{API}/test/pre", json=body)
    assert tried.status_code == 200, tried.text
    echoed = json.loads(tried.json()["result"])
    assert echoed["path"] == "/echo/orders/A-1" and echoed["query"] == {"verbose": "true"}
    assert echoed["headers"]["authorization"] == f"Bearer {KEY}"
    # A path parameter stays in its segment; "." and ".." are refused.
    body["parameters"] = {"order_id": "A/7?x#y z"}
    echoed = json.loads(service_admin.client.post(f"{API}/test/pre", json=body).json()["result"])
    assert echoed["raw_path"] == "/echo/orders/A%2F7%3Fx%23y%20z"
    body["parameters"] = {"order_id": ".."}
    refused = service_admin.client.post(f"{API}/test/pre", json=body).json()
    assert refused == {"error": "order_id may not be '..'"}
    body["parameters"] = {"order_id": "A-1", "X-Shop": "Zürich"}
    refused = service_admin.client.post(f"{API}/test/pre", json=body).json()
    assert refused == {"error": "X-Shop must be printable ASCII (a header)"}
    # A metadata address is refused by the SSRF guard, in words.
    body["parameters"] = {"order_id": "A-1"}
    body["schema"] = yaml.safe_dump(document("http://169.254.169.254"))
    refused = service_admin.client.post(f"{API}/test/pre", json=body).json()
    assert "may not be called" in refused["error"] and "a metadata address" in refused["error"]


def test_an_agent_calls_the_workspaces_api_with_its_key(
    service_stack: support.Stack,
    service_admin: Admin,
    service: HttpEcho,
    orders: dict[str, Any],
    upstream: Any,
) -> None:
    upstream.reset()
    app = agent_with(
        service_stack,
        service_admin,
        {"provider_type": "api", "provider_id": orders["id"], "tool_name": "get_order"},
        {"provider_type": "api", "provider_id": orders["id"], "tool_name": "create_order"},
        {"provider_type": "api", "provider_id": orders["id"], "tool_name": "fail_with"},
    )
    events = streamed(app, 'get_order {"order_id": "A 7", "verbose": false, "X-Shop": "north"}')
    first = next(iter(thoughts(events).values()))
    assert first["tool"] == "get_order"
    echoed = json.loads(json.loads(first["observation"])["get_order"])
    assert echoed["method"] == "GET" and echoed["raw_path"] == "/echo/orders/A%207"
    assert echoed["query"] == {"verbose": "false"}
    assert echoed["headers"]["x-shop"] == "north"
    assert echoed["headers"]["authorization"] == f"Bearer {KEY}"
    assert answer(events).startswith("Calling get_order.Tool said: {")
    # The JSON body from the call's arguments.
    events = streamed(app, 'create_order {"item": "tea", "quantity": 2, "notes": {"gift": true}}')
    observed = json.loads(next(iter(thoughts(events).values()))["observation"])
    sent = json.loads(observed["create_order"])
    assert sent["method"] == "POST"
    assert sent["json"] == {"item": "tea", "quantity": 2, "notes": {"gift": True}}
    # The service's error: the model reads it, the run goes on.
    events = streamed(app, 'fail_with {"code": 503}')
    observed = json.loads(next(iter(thoughts(events).values()))["observation"])
    assert observed["fail_with"] == "Error: fail_with answered HTTP 503: status 503"
    assert events[-1].event == "message_end"
    # In use: the provider cannot be deleted, nor lose an operation the app uses.
    refused = service_admin.client.post(f"{API}/delete", json={"provider": "Orders"})
    assert_envelope(refused, 409, "conflict", "uses 'Orders'")
    smaller = document(service.base_url)
    del smaller["paths"]["/status/{code}"]
    update = {**provider_body(service.base_url, schema=json.dumps(smaller)),
              "original_provider": "Orders"}  # fmt: skip
    refused = service_admin.client.post(f"{API}/update", json=update)
    assert_envelope(refused, 409, "conflict", "uses 'fail_with'")
    app.client.close()
    assert service_admin.client.delete(f"/console/api/apps/{app.app_id}").status_code == 204


def test_an_agents_api_tools_are_checked_when_saved_and_imported(
    service_stack: support.Stack, service_admin: Admin, orders: dict[str, Any]
) -> None:
    client = service_admin.client
    app = agent_with(service_stack, service_admin)
    config = client.get(f"/console/api/apps/{app.app_id}/model-config").json()["data"]
    # Another workspace's provider, by its id: not this workspace's.
    other = make_admin(service_stack, workspace="Elsewhere")
    try:
        added = other.client.post(f"{API}/add", json=provider_body("http://127.0.0.1:9", "Theirs"))
        assert added.status_code == 200, added.text
        theirs = other.client.get(f"{API}/get", params={"provider": "Theirs"}).json()["id"]
    finally:
        other.client.close()
    for tools, says in [
        ([{"provider_type": "api", "provider_id": theirs, "tool_name": "get_order"}],
         f"agent_mode.tools[0].provider_id: no custom tool provider '{theirs}'"),
        ([{"provider_type": "api", "provider_id": "nope", "tool_name": "get_order"}],
         "agent_mode.tools[0].provider_id: no custom tool provider 'nope'"),
        ([{"provider_type": "api", "provider_id": orders["id"], "tool_name": "refund"}],
         "agent_mode.tools[0].tool_name: Orders has no operation 'refund'"),
        ([{"provider_type": "api", "provider_id": orders["id"], "tool_name": "get_order"},
          {"provider_type": "api", "provider_id": orders["id"], "tool_name": "get_order"}],
         "agent_mode.tools[1].tool_name: another of the agent's tools is called 'get_order'"),
    ]:  # fmt: skip
        config["agent_mode"]["tools"] = tools
        saved = client.post(f"/console/api/apps/{app.app_id}/model-config", json=config)
        assert_envelope(saved, 400, "invalid_param", says)
    # An import names the provider by another workspace's id: found here by its name.
    document_ = {
        "version": "0.3.0", "kind": "app",
        "app": {"name": "Imported shop agent", "mode": "agent-chat"},
        "model_config": {"agent_mode": {"enabled": True, "tools": [
            {"provider_type": "api", "provider_id": "0b0e-elsewhere", "provider_name": "Orders",
             "tool_name": "get_order", "enabled": True},
            {"provider_type": "api", "provider_id": "x", "provider_name": "Billing",
             "tool_name": "charge", "enabled": True},
        ]}},
    }  # fmt: skip
    imported = client.post(
        "/console/api/apps/imports",
        json={"mode": "yaml-content", "yaml_content": yaml.safe_dump(document_)},
    ).json()
    assert imported["status"] == "completed-with-warnings", imported
    assert "charge" in " ".join(imported["warnings"])
    kept = client.get(f"/console/api/apps/{imported['app_id']}/model-config").json()["data"]
    assert [(t["provider_id"], t["tool_name"]) for t in kept["agent_mode"]["tools"]] == [
        (orders["id"], "get_order")
    ]
    assert client.delete(f"/console/api/apps/{imported['app_id']}").status_code == 204
    app.client.close()


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ('{"openapi": "3.0.0", "info": {"description": "\\ud800"}}', "not Unicode text"),
        ('{"openapi": "3.0.0", "info": {"title": "a\\u0000b"}}', "NUL characters"),
        ("openapi: 3.0.0\nservers: [{url: 'https://api.example#'}]\npaths: {}", "only a host"),
    ],
)
def test_text_that_cannot_be_stored_is_refused(
    service_admin: Admin, schema: str, says: str
) -> None:
    read = service_admin.client.post(f"{API}/schema", json={"schema": schema})
    assert_envelope(read, 400, "invalid_param", says)


def test_a_header_parameter_the_request_sets_itself_is_refused(
    service_admin: Admin, service: HttpEcho
) -> None:
    broken = document(service.base_url)
    parameters = broken["paths"]["/echo/orders/{order_id}"]["get"]["parameters"]
    parameters.append({"name": "Host", "in": "header", "schema": {"type": "string"}})
    read = service_admin.client.post(f"{API}/schema", json={"schema": json.dumps(broken)})
    assert_envelope(read, 400, "invalid_param", "'Host' cannot be a header parameter")


def tool_workflow(**tool: Any) -> dict[str, Any]:
    """A workflow: start (an order id) → a custom API tool's node → end (its text)."""
    node = {
        "type": "tool", "title": "Look it up", "provider_type": "api",
        "provider_name": "Orders", "tool_name": "get_order", "tool_configurations": {},
        "tool_parameters": {"order_id": {"type": "variable", "value": ["start", "order"]},
                            "verbose": {"type": "constant", "value": True}},
        **tool,
    }  # fmt: skip
    return {
        "version": "0.3.1", "kind": "app",
        "app": {"name": "Order lookup", "mode": "workflow"},
        "workflow": {"features": {}, "environment_variables": [], "conversation_variables": [],
            "graph": {
                "nodes": [
                    {"id": "start", "type": "custom", "data": {"type": "start", "title": "Start",
                     "variables": [{"variable": "order", "label": "Order", "type": "text-input",
                                    "required": True, "max_length": 64}]}},
                    {"id": "lookup", "type": "custom", "data": node},
                    {"id": "end", "type": "custom", "data": {"type": "end", "title": "End",
                     "outputs": [{"variable": "found", "value_selector": ["lookup", "text"]}]}},
                ],
                "edges": [{"id": "a", "source": "start", "target": "lookup"},
                          {"id": "b", "source": "lookup", "target": "end"}],
            }},
    }  # fmt: skip


def test_a_workflows_tool_node_calls_a_custom_api_tool(
    service_stack: support.Stack, service_admin: Admin, orders: dict[str, Any]
) -> None:
    app = published_app(service_stack, service_admin, tool_workflow())
    try:
        draft = service_admin.client.get(f"/console/api/apps/{app.app_id}/workflows/draft").json()
        node = next(n for n in draft["graph"]["nodes"] if n["id"] == "lookup")
        assert node["data"]["provider_id"] == orders["id"]  # found by its name, id written in
        ran = app.client.post(
            "/workflows/run", json={"inputs": {"order": "C-3"}, "user": "wf-user"}
        )
        assert ran.status_code == 200, ran.text
        data = ran.json()["data"]
        assert data["status"] == "succeeded", data
        echoed = json.loads(data["outputs"]["found"])
        assert echoed["raw_path"] == "/echo/orders/C-3" and echoed["query"] == {"verbose": "true"}
        assert echoed["headers"]["authorization"] == f"Bearer {KEY}"
        # The node alone, from the console's debugger.
        alone = service_admin.client.post(
            f"/console/api/apps/{app.app_id}/workflows/draft/nodes/lookup/run",
            json={"inputs": {"#start.order#": "D-4"}},
        )
        assert alone.status_code == 200, alone.text
        assert alone.json()["status"] == "succeeded", alone.json()
        assert json.loads(alone.json()["outputs"]["text"])["raw_path"] == "/echo/orders/D-4"
        # Used by the workflow: the provider cannot be deleted.
        refused = service_admin.client.post(f"{API}/delete", json={"provider": "Orders"})
        assert_envelope(refused, 409, "conflict", "The app 'Order lookup' uses 'Orders'")
    finally:
        app.client.close()
        service_admin.client.delete(f"/console/api/apps/{app.app_id}")
    # Another workspace's (or no) provider, an operation it lacks: refused when saved, named.
    made = service_admin.client.post("/console/api/apps", json={"name": "x", "mode": "workflow"})
    app_id = made.json()["data"]["id"]
    for tool, says in [
        ({"provider_name": "Billing"}, "node 'lookup' (Look it up).provider_id: no custom tool"),
        ({"tool_name": "refund"}, "node 'lookup' (Look it up).tool_name: Orders has no operation"),
    ]:
        graph = tool_workflow(**tool)["workflow"]["graph"]
        synced = service_admin.client.post(
            f"/console/api/apps/{app_id}/workflows/draft", json={"graph": graph, "features": {}}
        )
        assert_envelope(synced, 400, "invalid_param", says)
    imported = service_admin.client.post(
        "/console/api/apps/imports",
        json={"mode": "yaml-content",
              "yaml_content": yaml.safe_dump(tool_workflow(provider_name="Billing"))},
    )  # fmt: skip
    assert imported.json()["status"] == "failed", imported.text
    assert "no custom tool provider 'Billing'" in imported.json()["error"]
    service_admin.client.delete(f"/console/api/apps/{app_id}")


def agent_workflow(**tool: Any) -> dict[str, Any]:
    """A workflow: start (a question) → an agent node with the Orders' lookup (its
    `verbose` fixed by the node) → end (its text)."""
    agent = {
        "type": "agent", "title": "Clerk", "agent_strategy_provider_name": "langgenius/agent/agent",
        "agent_strategy_name": "function_calling",
        "agent_parameters": {
            "model": {"type": "constant", "value": {
                "provider": "langgenius/openai_api_compatible/openai_api_compatible",
                "model": "fake", "mode": "chat", "completion_params": {}}},
            "tools": {"type": "constant", "value": [{
                "enabled": True, "type": "api", "provider_name": "Orders",
                "tool_name": "get_order", "settings": {},
                "parameters": {"order_id": {"auto": 1, "value": None},
                               "verbose": {"auto": 0, "value": True}},
                **tool}]},
            "instruction": {"type": "constant", "value": "You are a careful assistant."},
            "query": {"type": "variable", "value": ["start", "question"]},
        },
    }  # fmt: skip
    flow = tool_workflow()
    graph = flow["workflow"]["graph"]
    graph["nodes"][0]["data"]["variables"] = [
        {"variable": "question", "label": "Q", "type": "paragraph", "required": True}
    ]
    graph["nodes"][1] = {"id": "lookup", "type": "custom", "data": agent}
    flow["app"]["name"] = "Order clerk"
    return flow


def test_a_workflows_agent_node_calls_a_custom_api_tool(
    service_stack: support.Stack, service_admin: Admin, orders: dict[str, Any]
) -> None:
    app = published_app(service_stack, service_admin, agent_workflow())
    try:
        draft = service_admin.client.get(f"/console/api/apps/{app.app_id}/workflows/draft").json()
        node = next(n for n in draft["graph"]["nodes"] if n["id"] == "lookup")
        (tool,) = node["data"]["agent_parameters"]["tools"]["value"]
        # Found by its name, its id written in where Dify keeps it (the name beside it).
        assert (tool["provider_name"], tool["provider_show_name"]) == (orders["id"], "Orders")
        assert "provider_id" not in tool
        question = 'Look it up: get_order {"order_id": "C-3"}'
        ran = app.client.post(
            "/workflows/run", json={"inputs": {"question": question}, "user": "wf-user"}
        )
        data = ran.json()["data"]
        assert data["status"] == "succeeded", data
        said = data["outputs"]["found"]
        assert said.startswith("Calling get_order.Tool said: ")
        echoed = json.loads(said.removeprefix("Calling get_order.Tool said: "))
        # The model's order id, the node's `verbose`, the provider's key.
        assert echoed["raw_path"] == "/echo/orders/C-3" and echoed["query"] == {"verbose": "true"}
        assert echoed["headers"]["authorization"] == f"Bearer {KEY}"
        refused = service_admin.client.post(f"{API}/delete", json={"provider": "Orders"})
        assert_envelope(refused, 409, "conflict", "The app 'Order clerk' uses 'Orders'")
        # As Dify's console saves it: the provider's id in provider_name (and the draft
        # saved again with what it read back).
        dify = agent_workflow(provider_name=orders["id"], provider_show_name="Orders")
        for graph in (dify["workflow"]["graph"], draft["graph"]):
            synced = service_admin.client.post(
                f"/console/api/apps/{app.app_id}/workflows/draft",
                json={"graph": graph, "features": {}},
            )
            assert synced.status_code == 200, synced.text
    finally:
        app.client.close()
        service_admin.client.delete(f"/console/api/apps/{app.app_id}")
    made = service_admin.client.post("/console/api/apps", json={"name": "x", "mode": "workflow"})
    app_id = made.json()["data"]["id"]
    for tool, says in [
        (
            {"tool_name": "refund"},
            "node 'lookup' (Clerk).agent_parameters.tools[0].tool_name: Orders has no operation",
        ),
        (
            {"parameters": {"verbose": {"auto": 0, "value": {"type": "variable", "value": "x"}}}},
            "node 'lookup' (Clerk).agent_parameters.tools[0].parameters.verbose.value: must be a "
            "variable selector",
        ),
        (
            {
                "parameters": {
                    "verbose": {"auto": 0, "value": {"type": "constant", "value": "very"}}
                }
            },
            "node 'lookup' (Clerk).agent_parameters.tools[0].parameters: verbose must be true or "
            "false",
        ),
    ]:
        graph = agent_workflow(**tool)["workflow"]["graph"]
        synced = service_admin.client.post(
            f"/console/api/apps/{app_id}/workflows/draft", json={"graph": graph, "features": {}}
        )
        assert_envelope(synced, 400, "invalid_param", says)
    service_admin.client.delete(f"/console/api/apps/{app_id}")
