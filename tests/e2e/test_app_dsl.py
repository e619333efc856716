"""Dify's app DSL over real HTTP: importing files in Dify's exported shape (`tests/e2e/dsl/`),
Dify's version rules and confirmations, model providers and datasets mapped onto the
workspace, files that fail (and write nothing), the 10 MB limit, a file fetched by URL behind
the SSRF guard, and export: secrets hidden, versions, a stable round trip."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests import support
from tests.e2e.conftest import Admin, AppFactory, make_admin, running_stack
from tests.support import Stack

assert_envelope = support.assert_envelope
DSL = Path(__file__).parent / "dsl"
IMPORTS = "/console/api/apps/imports"
PROVIDERS = "/console/api/workspaces/current/model-providers"
MB = 1024 * 1024
WORKFLOW_FILES = {
    "workflow_llm.yml": ("workflow", ["start", "llm", "end"]),
    "chatflow_basic.yml": ("advanced-chat", ["start", "llm", "answer"]),
    "if_else.yml": ("workflow", ["start", "if-else", "template-transform", "end", "end"]),
    "iteration.yml": (
        "workflow",
        ["start", "iteration", "iteration-start", "code", "template-transform", "end"],
    ),
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with the default body limits (an import's may hold a 10 MB file, whatever
    `CONDUIT_HTTP_MAX_JSON_BODY_BYTES` says), whose outbound URLs may reach this machine (the
    yaml-url test's file server)."""
    with running_stack(
        tmp_path_factory.mktemp("dsl"),
        CONDUIT_WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32",
    ) as started:
        yield started


@pytest.fixture(scope="module")
def file_server() -> Iterator[str]:
    """The DSL files over HTTP on 127.0.0.1 (for yaml-url)."""
    handler = functools.partial(_QuietHandler, directory=str(DSL))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def text(name: str) -> str:
    return (DSL / name).read_text(encoding="utf-8")


def document(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load(text(name)))


def dumped(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, allow_unicode=True)


def post_import(client: httpx.Client, content: str, **fields: Any) -> httpx.Response:
    return client.post(IMPORTS, json={"mode": "yaml-content", "yaml_content": content, **fields})


def imported(client: httpx.Client, content: str, **fields: Any) -> dict[str, Any]:
    response = post_import(client, content, **fields)
    assert response.status_code == 200, response.text
    body = dict(response.json())
    assert body["status"] in ("completed", "completed-with-warnings"), body
    return body


def failed(response: httpx.Response, error: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body = dict(response.json())
    assert body["status"] == "failed" and body["app_id"] is None, body
    assert error in body["error"], body
    return body


def draft(client: httpx.Client, app_id: str) -> dict[str, Any]:
    response = client.get(f"/console/api/apps/{app_id}/workflows/draft")
    assert response.status_code == 200, response.text
    return dict(response.json())


def exported(client: httpx.Client, app_id: str, **params: Any) -> str:
    response = client.get(f"/console/api/apps/{app_id}/export", params=params)
    assert response.status_code == 200, response.text
    return str(response.json()["data"])


def app_total(client: httpx.Client) -> int:
    return int(client.get("/console/api/apps").json()["total"])


def add_provider(client: httpx.Client, name: str, models: list[str]) -> str:
    made = client.post(
        PROVIDERS,
        json={"name": name, "base_url": "https://models.example.com/v1", "models": models},
    )
    assert made.status_code == 201, made.text
    return str(made.json()["data"]["id"])


def node_of(graph: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(n for n in graph["nodes"] if n["data"].get("type") == kind)


class TestImport:
    @pytest.mark.parametrize("name", sorted(WORKFLOW_FILES))
    def test_a_dify_file_becomes_an_apps_draft(self, admin: Admin, name: str) -> None:
        client = admin.client
        mode, types = WORKFLOW_FILES[name]
        source = document(name)
        body = imported(client, text(name))
        assert (body["app_mode"], body["current_dsl_version"], body["imported_dsl_version"]) == (
            mode,
            "0.3.1",
            "0.3.1",
        )
        assert body["error"] == ""
        app = client.get(f"/console/api/apps/{body['app_id']}").json()["data"]
        assert (app["name"], app["mode"], app["icon"]) == (
            source["app"]["name"],
            mode,
            source["app"]["icon"],
        )
        found = draft(client, body["app_id"])
        assert sorted(n["data"]["type"] for n in found["graph"]["nodes"] if n["data"]["type"]) == (
            sorted(types)
        )
        assert found["graph"]["edges"] == source["workflow"]["graph"]["edges"]
        assert found["features"] == source["workflow"]["features"]
        assert [v["name"] for v in found["conversation_variables"]] == [
            v["name"] for v in source["workflow"]["conversation_variables"]
        ]
        # A draft: the Service API runs it once it is published.
        assert_envelope(
            client.get(f"/console/api/apps/{body['app_id']}/workflows/publish"),
            404,
            "published_workflow_not_exist",
        )

    def test_files_without_models_import_completed(self, admin: Admin) -> None:
        for name in ("if_else.yml", "iteration.yml"):
            body = imported(admin.client, text(name))
            assert (body["status"], body["warnings"], body["provider_mappings"]) == (
                "completed",
                [],
                [],
            )

    def test_dify_providers_map_onto_the_workspaces(self, admin: Admin) -> None:
        client = admin.client
        openai = add_provider(client, "OpenAI", ["gpt-4o", "gpt-4o-mini"])
        gateway = add_provider(client, "Gateway", ["gpt-4o-mini"])
        body = imported(client, text("chatflow_basic.yml"))
        assert body["status"] == "completed", body
        assert body["provider_mappings"] == [
            {
                "where": "node 'llm' (LLM) model",
                "model": "gpt-4o",
                "from": "langgenius/openai/openai",
                "to": f"workspace:{openai}",
                "matched": True,
            }
        ]
        llm = node_of(draft(client, body["app_id"])["graph"], "llm")
        assert llm["data"]["model"]["provider"] == f"workspace:{openai}"
        assert llm["data"]["model"]["name"] == "gpt-4o"

        # Both list gpt-4o-mini; the one named after the Dify provider is preferred.
        body = imported(client, text("workflow_llm.yml"))
        assert body["provider_mappings"][0]["to"] == f"workspace:{openai}"
        renamed = document("workflow_llm.yml")
        node_of(renamed["workflow"]["graph"], "llm")["data"]["model"]["provider"] = "gateway"
        body = imported(client, dumped(renamed))
        assert body["provider_mappings"][0]["to"] == f"workspace:{gateway}"

    def test_an_agent_nodes_model_maps_onto_the_workspaces_too(self, admin: Admin) -> None:
        client = admin.client
        fakes = add_provider(client, "Fakes", ["fake"])
        agent_file = DSL.parent / "workflows" / "nodes" / "agent.yml"
        body = imported(client, agent_file.read_text(encoding="utf-8"))
        assert body["provider_mappings"] == [
            {
                "where": "node 'agent' (Helper) agent_parameters.model.value",
                "model": "fake",
                "from": "langgenius/openai_api_compatible/openai_api_compatible",
                "to": f"workspace:{fakes}",
                "matched": True,
            }
        ]
        agent = node_of(draft(client, body["app_id"])["graph"], "agent")
        model = agent["data"]["agent_parameters"]["model"]["value"]
        assert (model["provider"], model["model"]) == (f"workspace:{fakes}", "fake")

    def test_an_unmatched_provider_runs_on_the_default_with_a_warning(self, admin: Admin) -> None:
        client = admin.client
        body = imported(client, text("workflow_llm.yml"))
        assert body["status"] == "completed-with-warnings"
        (warning,) = body["warnings"]
        assert "node '1733300000002' (Summarise)" in warning
        assert "langgenius/openai_api_compatible/openai_api_compatible" in warning
        assert "the server's local model" in warning
        assert body["provider_mappings"][0]["to"] == "default"
        assert body["provider_mappings"][0]["matched"] is False
        llm = node_of(draft(client, body["app_id"])["graph"], "llm")
        assert llm["data"]["model"]["provider"] == "default"
        assert llm["data"]["model"]["name"] == "gpt-4o-mini"

    def test_a_chat_app_imports_into_its_model_config(self, admin: Admin) -> None:
        client = admin.client
        openai = add_provider(client, "OpenAI", ["gpt-4o"])
        body = imported(client, text("chat_app.yml"))
        assert (body["app_mode"], body["status"]) == ("chat", "completed-with-warnings")
        (warning,) = body["warnings"]
        assert "model_config.dataset_configs" in warning and "not a dataset of this" in warning
        config = client.get(f"/console/api/apps/{body['app_id']}/model-config").json()["data"]
        source = document("chat_app.yml")["model_config"]
        assert config["pre_prompt"] == source["pre_prompt"]
        assert config["user_input_form"] == source["user_input_form"]
        assert config["model"] == {**source["model"], "provider": f"workspace:{openai}"}
        assert config["dataset_configs"]["datasets"]["datasets"] == []

    def test_the_draft_of_a_workflow_app_can_be_overwritten(
        self, admin: Admin, make_app: AppFactory
    ) -> None:
        client = admin.client
        app_id = make_app(mode="workflow", name="Before")["id"]
        body = imported(client, text("if_else.yml"), app_id=app_id)
        assert body["app_id"] == app_id
        assert node_of(draft(client, app_id)["graph"], "if-else")["data"]["title"] == (
            "Is it a greeting?"
        )
        app = client.get(f"/console/api/apps/{app_id}").json()["data"]
        assert app["name"] == "Greeting branch"
        total = app_total(client)

        chat_id = make_app(mode="chat")["id"]
        failed(
            post_import(client, text("if_else.yml"), app_id=chat_id),
            "Only workflow or advanced chat apps can be overwritten",
        )
        failed(
            post_import(client, text("chatflow_basic.yml"), app_id=app_id),
            "cannot overwrite the workflow app",
        )
        failed(post_import(client, text("if_else.yml"), app_id="nope"), "App not found")
        assert app_total(client) == total + 1  # the chat app only

    def test_the_name_and_icon_given_override_the_files(self, admin: Admin) -> None:
        client = admin.client
        body = imported(
            client, text("if_else.yml"), name="Mine", icon="🦊", icon_background="#000000"
        )
        app = client.get(f"/console/api/apps/{body['app_id']}").json()["data"]
        assert (app["name"], app["icon"], app["icon_background"]) == ("Mine", "🦊", "#000000")

    def test_a_file_by_url(self, stack: Stack, admin: Admin, file_server: str) -> None:
        client = admin.client
        response = client.post(
            IMPORTS, json={"mode": "yaml-url", "yaml_url": f"{file_server}/if_else.yml"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "completed"
        failed(
            client.post(IMPORTS, json={"mode": "yaml-url", "yaml_url": f"{file_server}/none.yml"}),
            "Error fetching YAML from URL: HTTP 404",
        )
        failed(
            client.post(IMPORTS, json={"mode": "yaml-url", "yaml_url": "http://10.1.2.3/a.yml"}),
            "yaml_url: the host 10.1.2.3 resolves to a private address",
        )
        failed(client.post(IMPORTS, json={"mode": "yaml-url"}), "yaml_url is required")

    def test_another_workspace_sees_nothing_of_an_import(self, stack: Stack, admin: Admin) -> None:
        newer = document("if_else.yml") | {"version": "0.9.0"}
        pending = post_import(admin.client, dumped(newer)).json()
        stranger = make_admin(stack, workspace="Elsewhere")
        try:
            confirmed = stranger.client.post(f"{IMPORTS}/{pending['id']}/confirm")
            failed(confirmed, "Import information expired or does not exist")
            app_id = imported(admin.client, text("if_else.yml"))["app_id"]
            failed(
                post_import(stranger.client, text("if_else.yml"), app_id=app_id), "App not found"
            )
            assert_envelope(
                stranger.client.get(f"{IMPORTS}/{app_id}/check-dependencies"), 404, "app_not_found"
            )
        finally:
            stranger.client.close()
        assert admin.client.get(f"{IMPORTS}/{app_id}/check-dependencies").json() == {
            "leaked_dependencies": []
        }


class TestVersions:
    def test_a_newer_file_waits_for_its_confirmation(self, admin: Admin) -> None:
        client = admin.client
        newer = document("if_else.yml") | {"version": "0.4.0"}
        response = post_import(client, dumped(newer), name="Confirmed later")
        assert response.status_code == 202, response.text
        pending = response.json()
        assert (pending["status"], pending["app_id"], pending["imported_dsl_version"]) == (
            "pending",
            None,
            "0.4.0",
        )
        assert app_total(client) == 0

        confirmed = client.post(f"{IMPORTS}/{pending['id']}/confirm")
        assert confirmed.status_code == 200, confirmed.text
        body = confirmed.json()
        assert (body["id"], body["status"], body["app_mode"]) == (
            pending["id"],
            "completed",
            "workflow",
        )
        assert client.get(f"/console/api/apps/{body['app_id']}").json()["data"]["name"] == (
            "Confirmed later"
        )
        failed(
            client.post(f"{IMPORTS}/{pending['id']}/confirm"),
            "Import information expired or does not exist",
        )
        assert app_total(client) == 1

    def test_an_older_minor_version_completes_with_warnings(self, admin: Admin) -> None:
        older = document("if_else.yml") | {"version": "0.1.5"}
        body = imported(admin.client, dumped(older))
        assert (body["status"], body["imported_dsl_version"]) == (
            "completed-with-warnings",
            "0.1.5",
        )
        assert "0.1.5" in body["warnings"][0]

    def test_a_file_without_a_version_is_0_1_0(self, admin: Admin) -> None:
        unversioned = {k: v for k, v in document("if_else.yml").items() if k != "version"}
        body = imported(admin.client, dumped(unversioned))
        assert (body["status"], body["imported_dsl_version"]) == (
            "completed-with-warnings",
            "0.1.0",
        )

    def test_a_version_that_is_not_text_fails(self, admin: Admin) -> None:
        content = text("if_else.yml").replace("version: 0.3.1", "version: 0.3")
        failed(post_import(admin.client, content), "Invalid version type, expected str")
        content = text("if_else.yml").replace("version: 0.3.1", "version: latest")
        failed(post_import(admin.client, content), "Invalid DSL version: 'latest'")


class TestBadFiles:
    def test_what_is_wrong_is_said_and_nothing_is_written(self, admin: Admin) -> None:
        client = admin.client
        workflow_only = document("if_else.yml")
        del workflow_only["workflow"]
        chat_only = document("chat_app.yml")
        del chat_only["model_config"]
        no_mode = document("if_else.yml")
        del no_mode["app"]["mode"]
        for content, error in (
            ("app: [unclosed", "Invalid YAML format"),
            ("- one\n- two\n", "Invalid YAML format: content must be a mapping"),
            ("version: 0.3.1\nkind: app\n", "Missing app data in YAML content"),
            (dumped(workflow_only), "Missing workflow data for workflow/advanced chat app"),
            (dumped(chat_only), "Missing model_config for chat/agent-chat/completion app"),
            (dumped(no_mode), "Missing app mode"),
            ("a: &x [1, 2]\nb: *x\napp: {mode: workflow}\n", "aliases (*) are not supported"),
        ):
            failed(post_import(client, content), error)
        failed(client.post(IMPORTS, json={"mode": "yaml-content"}), "yaml_content is required")
        assert_envelope(
            client.post(IMPORTS, json={"mode": "zip", "yaml_content": "x"}),
            400,
            "invalid_param",
            "mode",
        )
        assert app_total(client) == 0

    def test_a_tool_this_server_does_not_serve_fails_naming_the_node(self, admin: Admin) -> None:
        body = failed(post_import(admin.client, text("unknown_node.yml")), "node 'search'")
        assert "(Web search)" in body["error"] and "'tavily'" in body["error"]
        assert app_total(admin.client) == 0

    def test_a_bad_variable_fails_naming_it(self, admin: Admin) -> None:
        broken = document("workflow_llm.yml")
        broken["workflow"]["environment_variables"][2]["value"] = "lots"
        failed(post_import(admin.client, dumped(broken)), "environment_variables[2].value")
        assert app_total(admin.client) == 0

    def test_ten_megabytes_is_the_limit(self, admin: Admin) -> None:
        client = admin.client
        content = text("if_else.yml")
        padding = "#" * 1000 + "\n"
        big = content + padding * (3 * MB // len(padding))  # over the default 2 MB body limit
        assert imported(client, big)["status"] == "completed"
        too_big = content + padding * (10 * MB // len(padding) + 1)
        failed(post_import(client, too_big), "File size exceeds the limit of 10MB")
        assert app_total(client) == 1


class TestExport:
    @pytest.mark.parametrize("name", sorted(WORKFLOW_FILES))
    def test_import_export_import_is_stable(self, admin: Admin, name: str) -> None:
        client = admin.client
        first = imported(client, text(name))["app_id"]
        once = exported(client, first)
        second = imported(client, once)["app_id"]
        twice = exported(client, second)
        assert twice == once
        for field in ("graph", "features", "conversation_variables"):
            assert draft(client, second)[field] == draft(client, first)[field], field
        data = yaml.safe_load(once)
        assert (data["version"], data["kind"], data["app"]["mode"]) == (
            "0.3.1",
            "app",
            WORKFLOW_FILES[name][0],
        )
        source = document(name)["workflow"]
        assert data["workflow"]["features"] == source["features"]
        assert data["workflow"]["graph"]["edges"] == source["graph"]["edges"]

    def test_secrets_are_empty_unless_asked_for(self, admin: Admin) -> None:
        client = admin.client
        app_id = imported(client, text("workflow_llm.yml"))["app_id"]
        shown = {v["name"]: v["value"] for v in draft(client, app_id)["environment_variables"]}
        assert shown == {"search_key": "sk-…cdef", "tone": "friendly", "max_words": 120}

        def values(**params: Any) -> dict[str, Any]:
            data = yaml.safe_load(exported(client, app_id, **params))
            return {v["name"]: v["value"] for v in data["workflow"]["environment_variables"]}

        assert values() == {"search_key": "", "tone": "friendly", "max_words": 120}
        assert values(include_secret="false")["search_key"] == ""
        assert values(include_secret="true")["search_key"] == "sk-live-0123456789abcdef"

    def test_a_version_and_a_chat_app_export(self, admin: Admin) -> None:
        client = admin.client
        app_id = imported(client, text("if_else.yml"))["app_id"]
        base = f"/console/api/apps/{app_id}/workflows"
        assert client.post(f"{base}/publish").status_code == 200
        published_id = client.get(f"{base}/publish").json()["id"]
        graph = draft(client, app_id)["graph"]
        node_of(graph, "if-else")["data"]["title"] = "Changed after publishing"
        changed = client.post(f"{base}/draft", json={"graph": graph, "features": {}})
        assert changed.status_code == 200, changed.text

        def title(**params: Any) -> str:
            data = yaml.safe_load(exported(client, app_id, **params))
            return str(node_of(data["workflow"]["graph"], "if-else")["data"]["title"])

        assert title() == "Changed after publishing"
        assert title(workflow_id=published_id) == "Is it a greeting?"
        assert_envelope(
            client.get(f"/console/api/apps/{app_id}/export", params={"workflow_id": "0" * 8}),
            404,
            "not_found",
            "Workflow not found with id",
        )

        chat_id = imported(client, text("chat_app.yml"))["app_id"]
        data = yaml.safe_load(exported(client, chat_id))
        assert data["app"]["mode"] == "chat" and "workflow" not in data
        assert (
            data["model_config"]["pre_prompt"]
            == document("chat_app.yml")["model_config"]["pre_prompt"]
        )
        again = imported(client, exported(client, chat_id))
        assert again["status"] == "completed", again  # nothing left to map or drop

    def test_dataset_ids_are_written_plain(self, admin: Admin, make_app: AppFactory) -> None:
        client = admin.client
        made = client.post("/console/api/datasets", json={"name": "Manuals"})
        assert made.status_code == 201, made.text
        dataset_id = made.json()["data"]["id"]
        source = document("if_else.yml")
        graph = source["workflow"]["graph"]
        node_of(graph, "if-else")["data"]["type"] = "knowledge-retrieval"
        node_of(graph, "knowledge-retrieval")["data"].update(
            dataset_ids=[dataset_id, "gAAAAABencrypted-by-dify=="],
            query_variable_selector=["1733500000001", "message"],
            retrieval_mode="multiple",
        )
        body = imported(client, dumped(source))
        assert body["status"] == "completed-with-warnings"
        assert "gAAAAABencrypted-by-dify==" in body["warnings"][0]
        data = yaml.safe_load(exported(client, body["app_id"]))
        assert node_of(data["workflow"]["graph"], "knowledge-retrieval")["data"]["dataset_ids"] == [
            dataset_id
        ]
