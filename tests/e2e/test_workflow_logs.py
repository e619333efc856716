"""A workflow app's runs read back over real HTTP: the Service API's logs (`GET
/v1/workflows/logs`, Dify's filters and pages), `GET /v1/parameters` of workflow and chatflow
apps (the published workflow's start form and features), and the console's run history (runs
by `last_id`, one run, its node executions) — on a server whose model is the fake upstream."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests import support
from tests.e2e.conftest import Admin, ServiceApp, add_member, make_admin, service_app
from tests.e2e.sse import frames
from tests.e2e.test_workflow_runs import workflow_app

LOG_FIELDS = {
    "id",
    "workflow_run",
    "created_from",
    "created_by_role",
    "created_by_account",
    "created_by_end_user",
    "created_at",
}
RUN_SUMMARY_FIELDS = {
    "id",
    "version",
    "status",
    "elapsed_time",
    "total_tokens",
    "total_steps",
    "created_at",
    "finished_at",
    "exceptions_count",
}
LOG_RUN_FIELDS = RUN_SUMMARY_FIELDS | {"error", "triggered_from"}
HISTORY_FIELDS = RUN_SUMMARY_FIELDS | {"created_by_end_user", "created_by_account"}
NODE_FIELDS = {
    "id",
    "index",
    "predecessor_node_id",
    "node_id",
    "node_type",
    "title",
    "inputs",
    "process_data",
    "outputs",
    "status",
    "error",
    "elapsed_time",
    "execution_metadata",
    "created_at",
    "finished_at",
    "iteration_id",
    "loop_id",
}
QUOTED = '100% sure_thing, say "hi"'
# parallel_llm.yml's start form, as /parameters gives it.
TOPIC_FORM = [
    {
        "text-input": {
            "variable": "topic",
            "label": "Topic",
            "type": "text-input",
            "required": True,
            "max_length": 100,
        }
    }
]


@dataclass
class Logged:
    """A published workflow app and its runs by name, in the order they were made."""

    app: ServiceApp
    runs: dict[str, str]
    between: datetime  # after the first three runs were made, before the last two
    logs_while_running: dict[str, Any]
    history_while_running: dict[str, Any]


def blocking_run(app: ServiceApp, user: str, topic: str) -> str:
    response = app.client.post("/workflows/run", json={"inputs": {"topic": topic}, "user": user})
    assert response.status_code == 200, response.text
    run_id: str = response.json()["workflow_run_id"]
    return run_id


@pytest.fixture(scope="module")
def logged(service_stack: support.Stack, service_admin: Admin, upstream: Any) -> Iterator[Logged]:
    """Five runs of one app: three succeeded (alice, bob, alice), one failed (its models
    answered 500), one stopped while its models hung."""
    upstream.reset()
    app = workflow_app(service_stack, service_admin, "parallel_llm.yml")
    runs = {
        "cats": blocking_run(app, "alice", "cats"),
        "quoted": blocking_run(app, "bob", QUOTED),
        "accent": blocking_run(app, "alice", "café ☕"),
    }
    between = datetime.now(UTC)
    upstream.control(mode="status-500", times=3)
    runs["failed"] = blocking_run(app, "carol", "owls")
    upstream.reset()
    upstream.control(mode="hang-before-first-token", times=3)
    seen: dict[str, Any] = {}
    with app.client.stream(
        "POST",
        "/workflows/run",
        json={"inputs": {"topic": "bats"}, "user": "dave", "response_mode": "streaming"},
    ) as response:
        for frame in frames(response):
            data = frame.data
            if frame.event == "node_started" and data["data"]["node_type"] == "llm" and not seen:
                seen["run_id"] = data["workflow_run_id"]
                seen["logs"] = app.client.get("/workflows/logs").json()
                seen["history"] = service_admin.client.get(
                    f"/console/api/apps/{app.app_id}/workflow-runs"
                ).json()
                stop = app.client.post(
                    f"/workflows/tasks/{data['task_id']}/stop", json={"user": "dave"}
                )
                assert stop.status_code == 200, stop.text
    upstream.reset()
    runs["stopped"] = seen["run_id"]
    yield Logged(app, runs, between, seen["logs"], seen["history"])
    app.client.close()


def logs(app: ServiceApp, **params: Any) -> dict[str, Any]:
    response = app.client.get("/workflows/logs", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def names(logged: Logged, body: dict[str, Any]) -> set[str]:
    """The runs of a logs page by their fixture names."""
    by_id = {run_id: name for name, run_id in logged.runs.items()}
    return {by_id[item["id"]] for item in body["data"]}


def assert_invalid(response: Any, param: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "invalid_param", body
    assert param in body["message"], body


# --- GET /v1/workflows/logs -------------------------------------------------------------------


class TestWorkflowLogs:
    def test_every_ended_run_is_listed_newest_first_in_dify_s_shape(self, logged: Logged) -> None:
        body = logs(logged.app)
        assert set(body) == {"page", "limit", "total", "has_more", "data"}
        assert (body["page"], body["limit"], body["total"], body["has_more"]) == (1, 20, 5, False)
        assert [item["id"] for item in body["data"]] == list(reversed(logged.runs.values()))
        first = body["data"][-1]
        assert set(first) == LOG_FIELDS
        assert set(first["workflow_run"]) == LOG_RUN_FIELDS
        assert first["workflow_run"]["id"] == logged.runs["cats"]
        assert first["workflow_run"]["status"] == "succeeded"
        assert first["workflow_run"]["triggered_from"] == "app-run"
        assert first["workflow_run"]["total_steps"] == 6
        assert first["created_from"] == "service-api"
        assert first["created_by_role"] == "end_user"
        assert first["created_by_account"] is None
        user = first["created_by_end_user"]
        assert set(user) == {"id", "type", "is_anonymous", "session_id"}
        assert (user["session_id"], user["type"], user["is_anonymous"]) == (
            "alice",
            "service-api",
            False,
        )
        assert isinstance(first["created_at"], int)
        assert first["created_at"] <= first["workflow_run"]["finished_at"]

    def test_a_running_run_has_no_log_until_it_ends(self, logged: Logged) -> None:
        assert logged.logs_while_running["total"] == 4
        assert logged.runs["stopped"] not in {i["id"] for i in logged.logs_while_running["data"]}
        assert logs(logged.app, status="stopped")["data"][0]["id"] == logged.runs["stopped"]

    @pytest.mark.parametrize(
        ("keyword", "expected"),
        [
            ("cats", {"cats"}),
            ("CATS", {"cats"}),
            ("poem about cats", {"cats"}),  # in the outputs only
            ("100%", {"quoted"}),
            ("%", {"quoted"}),  # LIKE's wildcards match themselves
            ("_", {"quoted"}),
            ('say "hi"', {"quoted"}),  # searched as the JSON text writes it
            ("café ☕", {"accent"}),
            ("bob", {"quoted"}),  # the end user's `user`
            ("nothing like this", set()),
        ],
    )
    def test_keyword_matches_the_inputs_the_outputs_or_the_user(
        self, logged: Logged, keyword: str, expected: set[str]
    ) -> None:
        body = logs(logged.app, keyword=keyword)
        assert names(logged, body) == expected
        assert body["total"] == len(expected)

    def test_keyword_may_be_a_run_id(self, logged: Logged) -> None:
        assert names(logged, logs(logged.app, keyword=logged.runs["accent"])) == {"accent"}

    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            ("succeeded", {"cats", "quoted", "accent"}),
            ("failed", {"failed"}),
            ("stopped", {"stopped"}),
            ("partial-succeeded", set()),
        ],
    )
    def test_status_filters(self, logged: Logged, status: str, expected: set[str]) -> None:
        body = logs(logged.app, status=status)
        assert names(logged, body) == expected
        assert {item["workflow_run"]["status"] for item in body["data"]} <= {status}

    def test_a_failed_run_s_log_carries_its_error(self, logged: Logged) -> None:
        (item,) = logs(logged.app, status="failed")["data"]
        assert item["workflow_run"]["error"]

    def test_creation_time_bounds_either_side(self, logged: Logged) -> None:
        between = logged.between
        before = logs(logged.app, created_at__before=between.isoformat())
        assert names(logged, before) == {"cats", "quoted", "accent"}
        after = logs(logged.app, created_at__after=between.isoformat())
        assert names(logged, after) == {"failed", "stopped"}
        naive = between.replace(tzinfo=None).isoformat()  # a date-time without zone is UTC
        assert names(logged, logs(logged.app, created_at__after=naive)) == {"failed", "stopped"}
        zulu = between.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert names(logged, logs(logged.app, created_at__before=zulu)) == names(logged, before)
        window = logs(
            logged.app,
            created_at__after=(between - timedelta(days=1)).isoformat(),
            created_at__before=(between + timedelta(days=1)).isoformat(),
        )
        assert window["total"] == 5

    def test_who_started_the_run(self, logged: Logged, service_admin: Admin) -> None:
        alice = logs(logged.app, created_by_end_user_session_id="alice")
        assert names(logged, alice) == {"cats", "accent"}
        assert logs(logged.app, created_by_end_user_session_id="nobody")["total"] == 0
        # Service API runs have an end user, never an account.
        assert logs(logged.app, created_by_account=service_admin.email)["total"] == 0

    def test_filters_combine(self, logged: Logged) -> None:
        body = logs(
            logged.app, keyword="a", status="succeeded", created_by_end_user_session_id="alice"
        )
        assert names(logged, body) == {"cats", "accent"}

    def test_pages(self, logged: Logged) -> None:
        ids = list(reversed(logged.runs.values()))
        first = logs(logged.app, page=1, limit=2)
        assert [i["id"] for i in first["data"]] == ids[:2]
        assert (first["total"], first["has_more"], first["limit"]) == (5, True, 2)
        last = logs(logged.app, page=3, limit=2)
        assert [i["id"] for i in last["data"]] == ids[4:]
        assert (last["has_more"], last["page"]) == (False, 3)
        beyond = logs(logged.app, page=4, limit=2)
        assert beyond["data"] == [] and beyond["total"] == 5 and not beyond["has_more"]
        # Empty values are absent (the newer SDK sends None as "").
        assert logs(logged.app, page="", limit="", keyword="", status="")["total"] == 5

    @pytest.mark.parametrize(
        ("params", "param"),
        [
            ({"page": "0"}, "page"),
            ({"page": "100000"}, "page"),
            ({"page": "one"}, "page"),
            ({"limit": "0"}, "limit"),
            ({"limit": "101"}, "limit"),
            ({"status": "running"}, "status"),
            ({"status": "bogus"}, "status"),
            ({"created_at__before": "yesterday"}, "created_at__before"),
            ({"created_at__after": "2024-13-01"}, "created_at__after"),
        ],
    )
    def test_a_bad_parameter_is_a_400_naming_it(
        self, logged: Logged, params: dict[str, str], param: str
    ) -> None:
        assert_invalid(logged.app.client.get("/workflows/logs", params=params), param)

    def test_only_the_key_s_app_is_listed(
        self, logged: Logged, service_stack: support.Stack, service_admin: Admin
    ) -> None:
        other = workflow_app(service_stack, service_admin, "parallel_llm.yml")
        try:
            assert logs(other) == {
                "page": 1,
                "limit": 20,
                "total": 0,
                "has_more": False,
                "data": [],
            }
        finally:
            other.client.close()


# --- GET /v1/parameters of workflow and chatflow apps -----------------------------------------

FORM = [
    {"variable": "topic", "label": "Topic", "type": "text-input", "required": True, "max_length": 80},
    {"variable": "notes", "label": "Notes", "type": "paragraph", "required": False},
    {"variable": "tone", "label": "Tone", "type": "select", "required": True,
     "options": ["dry", "warm"], "default": "dry"},
    {"variable": "count", "label": "Count", "type": "number", "required": False},
]  # fmt: skip
FEATURES = {
    "opening_statement": "Ask for a poem.",
    "suggested_questions": ["A poem about cats?"],
    "suggested_questions_after_answer": {"enabled": True},
    "text_to_speech": {"enabled": False, "voice": "", "language": ""},
    "speech_to_text": {"enabled": False},
    "retriever_resource": {"enabled": False},
    "sensitive_word_avoidance": {"enabled": False},
    "file_upload": {
        "enabled": True,
        "allowed_file_types": ["image"],
        "allowed_file_upload_methods": ["local_file"],
        "number_limits": 2,
        "image": {"enabled": True, "number_limits": 2, "transfer_methods": ["local_file"]},
    },
}


def redraft(admin: Admin, app_id: str, *, variables: list[dict[str, Any]], features: Any) -> None:
    """The app's draft with the start node's variables and the features replaced."""
    draft = admin.client.get(f"/console/api/apps/{app_id}/workflows/draft")
    assert draft.status_code == 200, draft.text
    body = draft.json()
    graph = body["graph"]
    (start,) = [n for n in graph["nodes"] if n["data"]["type"] == "start"]
    start["data"]["variables"] = variables
    synced = admin.client.post(
        f"/console/api/apps/{app_id}/workflows/draft",
        json={
            "graph": graph,
            "features": features,
            "environment_variables": body.get("environment_variables") or [],
            "conversation_variables": body.get("conversation_variables") or [],
            "hash": body["hash"],
        },
    )
    assert synced.status_code == 200, synced.text


def publish(admin: Admin, app_id: str) -> None:
    published = admin.client.post(f"/console/api/apps/{app_id}/workflows/publish", json={})
    assert published.status_code in (200, 201), published.text


def parameters(app: ServiceApp) -> dict[str, Any]:
    response = app.client.get("/parameters", params={"user": "alice"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class TestParameters:
    def test_a_workflow_app_s_form_is_its_start_node_s_variables(self, logged: Logged) -> None:
        body = parameters(logged.app)
        assert body["user_input_form"] == TOPIC_FORM
        # parallel_llm.yml has no features: each is Dify's default.
        assert body["opening_statement"] is None and body["suggested_questions"] == []
        assert body["speech_to_text"] == {"enabled": False}
        assert body["file_upload"]["image"]["enabled"] is False
        assert body["system_parameters"]["file_size_limit"] == 15
        assert body["system_parameters"]["workflow_file_upload_limit"] == 10

    def test_the_form_and_features_follow_the_published_workflow_not_the_draft(
        self, service_stack: support.Stack, service_admin: Admin
    ) -> None:
        app = workflow_app(service_stack, service_admin, "parallel_llm.yml")
        try:
            redraft(service_admin, app.app_id, variables=FORM, features=FEATURES)
            assert [list(v) for v in parameters(app)["user_input_form"]] == [["text-input"]]
            publish(service_admin, app.app_id)
            body = parameters(app)
            assert body["user_input_form"] == [{item["type"]: item} for item in FORM]
            assert body["opening_statement"] == "Ask for a poem."
            assert body["suggested_questions"] == ["A poem about cats?"]
            assert body["suggested_questions_after_answer"] == {"enabled": True}
            assert body["retriever_resource"] == {"enabled": False}
            assert body["file_upload"] == FEATURES["file_upload"]
            assert body["annotation_reply"] == {"enabled": False}  # unset: the default
            # The published form is what a run is checked against.
            refused = app.client.post(
                "/workflows/run", json={"inputs": {"topic": "x"}, "user": "alice"}
            )
            assert refused.status_code == 400
            assert refused.json()["message"] == "tone is required in input form"
        finally:
            app.client.close()

    def test_a_chatflow_app_s_form_once_published(
        self, service_stack: support.Stack, service_admin: Admin
    ) -> None:
        app = service_app(service_stack, service_admin, mode="advanced-chat")
        try:
            unpublished = app.client.get("/parameters")
            assert unpublished.status_code == 400
            assert unpublished.json()["code"] == "app_unavailable"
            redraft(service_admin, app.app_id, variables=FORM[:1], features=FEATURES)
            publish(service_admin, app.app_id)
            body = parameters(app)
            assert body["user_input_form"] == [{"text-input": FORM[0]}]
            assert body["opening_statement"] == "Ask for a poem."
        finally:
            app.client.close()


# --- the console's run history ----------------------------------------------------------------


def history(admin: Admin, app_id: str, path: str = "", **params: Any) -> Any:
    return admin.client.get(f"/console/api/apps/{app_id}/workflow-runs{path}", params=params)


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class TestConsoleRunHistory:
    def test_runs_newest_first_in_dify_s_console_shape(
        self, logged: Logged, service_admin: Admin
    ) -> None:
        body = ok(history(service_admin, logged.app.app_id))
        assert set(body) == {"limit", "has_more", "data"}
        assert (body["limit"], body["has_more"]) == (20, False)
        assert [run["id"] for run in body["data"]] == list(reversed(logged.runs.values()))
        cats = body["data"][-1]
        assert set(cats) == HISTORY_FIELDS
        assert cats["status"] == "succeeded" and cats["total_steps"] == 6
        assert cats["created_by_end_user"]["session_id"] == "alice"
        assert cats["created_by_account"] is None
        assert isinstance(cats["created_at"], int) and isinstance(cats["finished_at"], int)

    def test_a_running_run_is_listed_as_running(self, logged: Logged) -> None:
        latest = logged.history_while_running["data"][0]
        assert latest["id"] == logged.runs["stopped"]
        assert latest["status"] == "running" and latest["finished_at"] is None

    def test_last_id_scrolls_through_every_run_once(
        self, logged: Logged, service_admin: Admin
    ) -> None:
        seen: list[str] = []
        last_id = None
        while True:
            params = {"limit": 2, **({"last_id": last_id} if last_id else {})}
            page = ok(history(service_admin, logged.app.app_id, **params))
            seen += [run["id"] for run in page["data"]]
            if not page["has_more"]:
                break
            last_id = page["data"][-1]["id"]
        assert seen == list(reversed(logged.runs.values()))

    @pytest.mark.parametrize(
        ("params", "param"),
        [({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"last_id": "nope"}, "last_id")],
    )
    def test_a_bad_parameter_is_a_400_naming_it(
        self, logged: Logged, service_admin: Admin, params: dict[str, str], param: str
    ) -> None:
        assert_invalid(history(service_admin, logged.app.app_id, **params), param)

    def test_a_run_s_detail(self, logged: Logged, service_admin: Admin) -> None:
        run = ok(history(service_admin, logged.app.app_id, f"/{logged.runs['quoted']}"))
        assert run["id"] == logged.runs["quoted"]
        assert run["inputs"] == {"topic": QUOTED}  # an object, not the Service API's string
        assert run["outputs"]["poem"] == f"You said: one poem about {QUOTED}"
        assert run["status"] == "succeeded" and run["error"] is None
        assert run["created_by_role"] == "end_user"
        assert run["created_by_end_user"]["session_id"] == "bob"
        assert {"version", "workflow_id", "elapsed_time", "total_tokens", "total_steps"} <= set(run)
        assert "graph" not in run
        failed = ok(history(service_admin, logged.app.app_id, f"/{logged.runs['failed']}"))
        assert failed["status"] == "failed" and failed["error"]

    def test_node_executions_in_the_order_they_started(
        self, logged: Logged, service_admin: Admin
    ) -> None:
        path = f"/{logged.runs['cats']}/node-executions"
        nodes = ok(history(service_admin, logged.app.app_id, path))["data"]
        assert [node["index"] for node in nodes] == list(range(1, 7))
        assert all(set(node) >= NODE_FIELDS for node in nodes)
        assert nodes[0]["node_id"] == "start" and nodes[-1]["node_id"] == "end"
        assert {n["node_id"] for n in nodes[1:4]} == {"llm1", "llm2", "llm3"}
        by_id = {node["node_id"]: node for node in nodes}
        assert by_id["llm1"]["node_type"] == "llm" and by_id["llm1"]["title"] == "Poem"
        assert by_id["llm1"]["outputs"]["text"] == "You said: one poem about cats"
        assert by_id["llm1"]["predecessor_node_id"] == "start"
        assert by_id["join"]["predecessor_node_id"] in {"llm1", "llm2", "llm3"}
        assert all(node["status"] == "succeeded" for node in nodes)
        assert all(node["iteration_id"] is None and node["loop_id"] is None for node in nodes)
        assert all(isinstance(node["created_at"], int) for node in nodes)

    def test_a_stopped_run_s_models_are_stopped(self, logged: Logged, service_admin: Admin) -> None:
        path = f"/{logged.runs['stopped']}/node-executions"
        nodes = ok(history(service_admin, logged.app.app_id, path))["data"]
        statuses = {node["node_id"]: node["status"] for node in nodes}
        assert statuses == {"start": "succeeded", "llm1": "stopped", "llm2": "stopped",
                            "llm3": "stopped"}  # fmt: skip

    def test_another_app_s_run_is_not_found_through_this_app(
        self, logged: Logged, service_stack: support.Stack, service_admin: Admin
    ) -> None:
        other = workflow_app(service_stack, service_admin, "parallel_llm.yml")
        try:
            run_id = logged.runs["cats"]
            for path in (f"/{run_id}", f"/{run_id}/node-executions"):
                response = history(service_admin, other.app_id, path)
                assert response.status_code == 404, response.text
            assert ok(history(service_admin, other.app_id))["data"] == []
        finally:
            other.client.close()

    def test_another_workspace_sees_nothing(
        self, logged: Logged, service_stack: support.Stack
    ) -> None:
        stranger = make_admin(service_stack, workspace="Elsewhere")
        try:
            run_id = logged.runs["cats"]
            for path in ("", f"/{run_id}", f"/{run_id}/node-executions"):
                response = history(stranger, logged.app.app_id, path)
                assert response.status_code == 404, (path, response.text)
        finally:
            stranger.client.close()

    def test_a_normal_member_may_not_read_runs(
        self, logged: Logged, service_stack: support.Stack, service_admin: Admin
    ) -> None:
        member = add_member(service_stack, service_admin, "normal")
        try:
            response = history(member, logged.app.app_id)
            assert response.status_code == 403, response.text
        finally:
            member.client.close()


def test_a_debugger_run_is_in_the_history_but_not_in_the_logs(
    service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    upstream.reset()
    app = workflow_app(service_stack, service_admin, "parallel_llm.yml")
    try:
        path = f"/console/api/apps/{app.app_id}/workflows/draft/run"
        with service_admin.client.stream("POST", path, json={"inputs": {"topic": "x"}}) as debug:
            assert debug.status_code == 200, debug.read()
            finished = [f.data for f in frames(debug) if f.event == "workflow_finished"]
        assert finished[0]["data"]["status"] == "succeeded", finished
        (run,) = ok(history(service_admin, app.app_id))["data"]
        assert run["id"] == finished[0]["workflow_run_id"]
        assert logs(app)["total"] == 0
    finally:
        app.client.close()


def test_a_chatflow_s_turns_are_logged_as_its_workflow_runs(
    service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    upstream.reset()
    app = workflow_app(service_stack, service_admin, "chatflow_memory.yml")
    try:
        turn = app.client.post(
            "/chat-messages", json={"inputs": {}, "query": "hello owls", "user": "cf-user"}
        )
        assert turn.status_code == 200, turn.text
        (entry,) = logs(app, keyword="cf-user")["data"]
        assert entry["workflow_run"]["status"] == "succeeded"
        assert entry["created_by_end_user"]["session_id"] == "cf-user"
        (run,) = ok(history(service_admin, app.app_id))["data"]
        assert run["id"] == entry["id"]
    finally:
        app.client.close()


def test_a_chat_app_has_neither_workflow_logs_nor_runs(
    service_stack: support.Stack, service_admin: Admin
) -> None:
    chat = service_app(service_stack, service_admin, mode="chat", pre_prompt="Hi")
    try:
        for response in (
            chat.client.get("/workflows/logs"),
            history(service_admin, chat.app_id),
            history(service_admin, chat.app_id, f"/{chat.app_id}"),
        ):
            assert response.status_code == 400, response.text
            assert response.json()["code"] == "not_workflow_app"
    finally:
        chat.client.close()
