"""Workflow agent nodes (Dify's `agent` node with its official strategies), published and run
over the Service API against a real server whose model is the fake OpenAI-compatible server
(it calls the functions a message names and answers with their results, in ReAct's format when
the prompt asks for it): the answer streamed and kept as the node's `text`, the `agent_log`
events of each round and tool call, the built-in tools' real answers (with settings and with
parameters the node fixes), both strategies, the rounds' limit, a chatflow's answer and memory,
a stop mid-run, and the checks when a draft is saved. Both modes (`CONDUIT_TEST_MODE`)."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import support
from tests.e2e.conftest import Admin, ServiceApp
from tests.e2e.sse import frames
from tests.e2e.test_agent import agent_requests
from tests.e2e.test_chatflow_runs import turn
from tests.e2e.test_workflow_runs import published_app, stream

DSL = Path(__file__).parent / "workflows" / "nodes" / "agent.yml"
SUM = 'Please compute eval_expression {"expression": "6*7 + 2**3"}'
Edit = Callable[[dict[str, Any]], None]
AppOf = Callable[..., ServiceApp]


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DSL.read_text())
    return loaded


def agent_data(dsl: dict[str, Any]) -> dict[str, Any]:
    node = next(n for n in dsl["workflow"]["graph"]["nodes"] if n["id"] == "agent")
    data: dict[str, Any] = node["data"]
    return data


def react(dsl: dict[str, Any]) -> None:
    agent_data(dsl).update(agent_strategy_name="ReAct", agent_strategy_label="ReAct")


def looping(dsl: dict[str, Any]) -> None:
    """A model that calls a tool whenever it is offered one; two rounds in all (Dify's
    `maximum_iterations`: the last one is offered no tool)."""
    parameters = agent_data(dsl)["agent_parameters"]
    parameters["model"]["value"]["model"] = "fake:tool-loop"
    parameters["maximum_iterations"]["value"] = 2


def chatflow(dsl: dict[str, Any]) -> None:
    """The same agent in a chatflow: the turn's query, the conversation's last turns (memory),
    and an answer node streaming its text."""
    dsl["app"].update(mode="advanced-chat", name="Agent chat")
    graph = dsl["workflow"]["graph"]
    graph["nodes"][0]["data"]["variables"] = []
    data = agent_data(dsl)
    data["agent_parameters"]["query"]["value"] = "{{#sys.query#}}"
    data["agent_parameters"]["instruction"]["value"] = "You are a careful assistant."
    data["memory"] = {"window": {"enabled": True, "size": 5}, "query_prompt_template": ""}
    graph["nodes"][-1] = {
        "id": "answer",
        "type": "custom",
        "data": {"type": "answer", "title": "Answer", "answer": "Agent: {{#agent.text#}}"},
    }
    graph["edges"][-1].update(id="agent-answer", target="answer")


@pytest.fixture(scope="module")
def app_of(service_stack: support.Stack, service_admin: Admin) -> Iterator[AppOf]:
    """The published app of the DSL file with an edit (by the edit's name), made once."""
    made: dict[str, ServiceApp] = {}

    def get(edit: Edit | None = None) -> ServiceApp:
        name = edit.__name__ if edit is not None else ""
        if name not in made:
            dsl = document()
            if edit is not None:
                edit(dsl)
            made[name] = published_app(service_stack, service_admin, dsl)
        return made[name]

    yield get
    for app in made.values():
        app.client.close()


@pytest.fixture
def model(upstream: Any) -> Iterator[Any]:
    upstream.reset()
    yield upstream
    upstream.reset()


def of(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["event"] == name]


def logs(events: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    """Each `agent_log` as (label, status, its parent's label)."""
    labels = {d["id"]: d["label"] for d in of(events, "agent_log")}
    return [
        (d["label"], d["status"], labels.get(d["parent_id"]) if d["parent_id"] else None)
        for d in of(events, "agent_log")
    ]


def finished(events: list[dict[str, Any]], node_id: str) -> dict[str, Any]:
    (data,) = [d for d in of(events, "node_finished") if d["node_id"] == node_id]
    return data


def test_an_agent_node_calls_a_tool_and_answers_with_its_result(
    app_of: AppOf, model: Any, service_admin: Admin
) -> None:
    events = stream(app_of(), {"name": "Ada", "question": SUM, "day": 25})
    end = events[-1]["data"]
    assert end["status"] == "succeeded", end
    assert end["outputs"]["answer"] == "Calling eval_expression.Tool said: 50"
    assert end["outputs"]["usage"]["total_tokens"] > 0
    assert end["total_tokens"] == end["outputs"]["usage"]["total_tokens"]
    # Each round and each call as it went: begun, then ended, the calls under their round.
    assert logs(events) == [
        ("ROUND 1", "start", None),
        ("CALL eval_expression", "start", "ROUND 1"),
        ("CALL eval_expression", "success", "ROUND 1"),
        ("ROUND 1", "success", None),
        ("ROUND 2", "start", None),
        ("ROUND 2", "success", None),
    ]
    node = finished(events, "agent")
    call = next(d for d in of(events, "agent_log") if d["label"].startswith("CALL"))
    call_end = [d for d in of(events, "agent_log") if d["id"] == call["id"]][-1]
    assert call_end["data"] == {
        "tool_name": "eval_expression",
        "tool_input": {"expression": "6*7 + 2**3"},
        "tool_response": "50",
    }
    assert call_end["node_execution_id"] == node["id"] and call_end["node_id"] == "agent"
    assert call_end["metadata"]["elapsed_time"] >= 0
    # The log kept with the node's execution (where Dify's console reads it): in its event and
    # in its stored record.
    stored = service_admin.client.get(
        f"/console/api/apps/{app_of().app_id}/workflow-runs/{end['id']}/node-executions"
    ).json()["data"]
    (record,) = [e for e in stored if e["node_id"] == "agent"]
    for kept in (node["execution_metadata"], record["execution_metadata"]):
        assert [(e["label"], e["status"]) for e in kept["agent_log"]] == [
            ("ROUND 1", "success"), ("CALL eval_expression", "success"), ("ROUND 2", "success")
        ]  # fmt: skip
        assert kept["total_tokens"] == end["total_tokens"]
    for event in of(events, "agent_log"):
        assert set(event) >= {"node_execution_id", "id", "label", "parent_id", "error",
                              "status", "data", "metadata", "node_id"}  # fmt: skip
    # The node's record: its outputs, what it was given, its rounds.
    assert node["status"] == "succeeded" and node["node_type"] == "agent"
    assert node["outputs"]["text"] == "Calling eval_expression.Tool said: 50"
    assert node["outputs"]["files"] == [] and node["outputs"]["json"] == []
    assert node["inputs"] == {"instruction": "You are a careful assistant. You help Ada.",
                              "query": SUM}  # fmt: skip
    process = node["process_data"]
    assert process["strategy"] == "function_calling" and process["model_name"] == "fake"
    assert process["tools"] == ["eval_expression", "weekday", "current_time"]
    assert [r["tool"] for r in process["rounds"]] == ["eval_expression", ""]
    assert json.loads(process["rounds"][0]["observation"]) == {"eval_expression": "50"}
    # The model saw the instruction, the question and the tools (the weekday's parameters
    # are the node's: it is asked for none; the expression left empty is the model's; the
    # MCP tool is off).
    asked = agent_requests(model)
    assert [r["tools"] for r in asked] == [["eval_expression", "weekday", "current_time"]] * 2
    offered = asked[0]["tool_parameters"]
    assert offered["weekday"] == [] and offered["eval_expression"] == ["expression"]
    first = asked[0]["messages"]
    assert first[0] == {"role": "system", "content": "You are a careful assistant. You help Ada."}
    assert first[-1] == {"role": "user", "content": SUM}
    assert asked[1]["messages"][-1]["role"] == "tool"
    assert asked[1]["messages"][-1]["content"] == "50"


def test_the_answer_streams_as_the_end_nodes_text_chunks(app_of: AppOf, model: Any) -> None:
    events = stream(app_of(), {"name": "Ada", "question": "just say hi"})
    chunks = of(events, "text_chunk")
    assert chunks and "".join(c["text"] for c in chunks) == "You said: just say hi"
    assert {tuple(c["from_variable_selector"]) for c in chunks} == {("agent", "text")}
    names = [e["event"] for e in events]
    # Streamed while the node ran: before its node_finished.
    assert names.index("text_chunk") < names.index("node_finished", names.index("agent_log"))
    assert logs(events) == [("ROUND 1", "start", None), ("ROUND 1", "success", None)]


def test_fixed_parameters_and_settings_are_the_nodes_not_the_models(
    app_of: AppOf, model: Any
) -> None:
    app = app_of()
    ran = app.client.post(
        "/workflows/run",
        json={
            "inputs": {"name": "Ada", "question": "weekday please", "day": 25},
            "user": "wf-user",
        },
    )
    data = ran.json()["data"]
    assert data["status"] == "succeeded", data
    assert data["outputs"]["answer"] == "Calling weekday.Tool said: December 25, 2024 is Wednesday."
    ran = app.client.post(
        "/workflows/run",
        json={"inputs": {"name": "Ada", "question": "current_time please"}, "user": "wf-user"},
    )
    assert ran.json()["data"]["outputs"]["answer"] == "Calling current_time.Tool said: IST"


def test_the_react_strategy_answers_through_the_prompt(app_of: AppOf, model: Any) -> None:
    events = stream(app_of(react), {"name": "Ada", "question": SUM})
    end = events[-1]["data"]
    assert end["status"] == "succeeded", end
    assert end["outputs"]["answer"] == 'Tool said: {"eval_expression": "50"}'
    node = finished(events, "agent")
    assert node["process_data"]["strategy"] == "ReAct"
    assert node["process_data"]["rounds"][0]["thought"] == "I should use eval_expression."
    asked = agent_requests(model)
    assert len(asked) == 2 and all(r["tools"] == [] for r in asked)
    assert "Final Answer:" in asked[0]["messages"][0]["content"]
    assert asked[1]["messages"][-1]["content"].startswith('Observation: {"eval_expression": "50"}')


def test_the_rounds_are_limited_and_the_last_one_answers(app_of: AppOf, model: Any) -> None:
    events = stream(app_of(looping), {"name": "Ada", "question": "keep going"})
    end = events[-1]["data"]
    assert end["status"] == "succeeded", end
    asked = agent_requests(model)
    # One round that may call tools (it called one), the last one offered none.
    assert [bool(r["tools"]) for r in asked] == [True, False]
    ended = [(label, status) for label, status, _ in logs(events) if status != "start"]
    assert ended == [("CALL eval_expression", "error"), ("ROUND 1", "success"),
                     ("ROUND 2", "success")]  # fmt: skip
    (failed,) = [d for d in of(events, "agent_log") if d["status"] == "error"]
    assert failed["error"] == "Error: expression is required"


def one_round(dsl: dict[str, Any]) -> None:
    agent_data(dsl)["agent_parameters"]["maximum_iterations"]["value"] = 1


def one_react_round(dsl: dict[str, Any]) -> None:
    one_round(dsl)
    react(dsl)


@pytest.mark.parametrize("edit", [one_round, one_react_round])
def test_one_round_in_all_answers_without_offering_tools(
    app_of: AppOf, model: Any, edit: Edit
) -> None:
    events = stream(app_of(edit), {"name": "Ada", "question": SUM})
    end = events[-1]["data"]
    assert end["status"] == "succeeded", end
    assert end["outputs"]["answer"] == f"You said: {SUM}"  # the model's own answer, whole
    (asked,) = agent_requests(model)
    assert asked["tools"] == []
    assert "Final Answer:" not in asked["messages"][0]["content"]  # nor ReAct's tools
    assert logs(events) == [("ROUND 1", "start", None), ("ROUND 1", "success", None)]


def test_a_chatflow_agent_streams_its_answer_and_remembers_the_conversation(
    app_of: AppOf, model: Any
) -> None:
    app = app_of(chatflow)
    first = turn(app, SUM)
    answer = "".join(e["answer"] for e in first if e["event"] == "message")
    assert answer == "Agent: Calling eval_expression.Tool said: 50"
    assert [e["event"] for e in first][-2:] == ["message_end", "workflow_finished"]
    logged = [event for event in first if event["event"] == "agent_log"]
    assert len(logged) == 6
    for event in logged:  # the chat family's envelope (Dify's: no workflow_run_id)
        assert event["conversation_id"] and event["message_id"] and event["task_id"]
        assert "workflow_run_id" not in event
    second = turn(app, "and then?", first[0]["conversation_id"])
    answer = "".join(e["answer"] for e in second if e["event"] == "message")
    assert answer == "Agent: You said: and then?"
    # The second turn's model saw the first turn before its question.
    messages = agent_requests(model)[-1]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1]["content"] == SUM
    assert messages[2]["content"] == "Agent: Calling eval_expression.Tool said: 50"


def test_a_stop_ends_an_agent_node_mid_round(app_of: AppOf, model: Any) -> None:
    app = app_of()
    model.control(mode="hang-before-first-token", times=1)
    with app.client.stream(
        "POST",
        "/workflows/run",
        json={"inputs": {"name": "Ada", "question": SUM}, "user": "wf-user",
              "response_mode": "streaming"},
    ) as response:  # fmt: skip
        events: list[dict[str, Any]] = []
        asked = 0.0
        for frame in frames(response):
            if frame.event == "ping":
                continue
            events.append(frame.data)
            if frame.event == "agent_log" and not asked:  # the first round began
                asked = time.monotonic()
                stop = app.client.post(
                    f"/workflows/tasks/{frame.data['task_id']}/stop", json={"user": "wf-user"}
                )
                assert stop.status_code == 200
    took = time.monotonic() - asked
    assert asked and took < 2.0, took
    assert finished(events, "agent")["status"] == "stopped"
    assert events[-1]["event"] == "workflow_finished"
    assert events[-1]["data"]["status"] == "stopped"
    run = app.client.get(f"/workflows/run/{events[-1]['workflow_run_id']}").json()
    assert run["status"] == "stopped"


AGENT = "node 'agent' (Helper)"


def tools_with(**tool: Any) -> Edit:
    def edit(dsl: dict[str, Any]) -> None:
        agent_data(dsl)["agent_parameters"]["tools"]["value"] = [{"enabled": True, **tool}]

    return edit


def parameter(name: str, value: Any) -> Edit:
    def edit(dsl: dict[str, Any]) -> None:
        agent_data(dsl)["agent_parameters"][name] = value

    return edit


def field(**change: Any) -> Edit:
    def edit(dsl: dict[str, Any]) -> None:
        agent_data(dsl).update(change)

    return edit


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (
            field(agent_strategy_provider_name="someone/mcp_agent/mcp_agent"),
            f"{AGENT}.agent_strategy_provider_name: the strategies of "
            "'someone/mcp_agent/mcp_agent' are not served",
        ),
        (field(agent_strategy_name="tree_of_thought"), f"{AGENT}.agent_strategy_name: must be"),
        (
            tools_with(type="mcp", provider_name="web", tool_name="search"),
            f"{AGENT}.agent_parameters.tools[0].type: 'mcp' tools are not served",
        ),
        (
            tools_with(type="builtin", provider_name="maths", tool_name="integrate"),
            f"{AGENT}.agent_parameters.tools[0].tool_name: maths has no tool 'integrate'",
        ),
        (
            tools_with(
                type="builtin",
                provider_name="time",
                tool_name="current_time",
                settings={"timezone": {"value": "Moon/Base"}},
            ),
            f"{AGENT}.agent_parameters.tools[0].settings: timezone must be a time zone",
        ),
        (
            tools_with(
                type="builtin",
                provider_name="time",
                tool_name="weekday",
                parameters={"year": {"auto": 0, "value": "soon"}},
            ),
            f"{AGENT}.agent_parameters.tools[0].parameters: year must be a number",
        ),
        (
            tools_with(type="api", provider_name="Billing", tool_name="refund"),
            f"{AGENT}.agent_parameters.tools[0].provider_name: no custom tool provider "
            "'Billing' in this workspace",
        ),
        (
            tools_with(
                type="builtin",
                provider_name="time",
                tool_name="weekday",
                parameters={"day": {"auto": 0, "value": {"type": "variable", "value": "day"}}},
            ),
            f"{AGENT}.agent_parameters.tools[0].parameters.day.value: must be a variable selector",
        ),
        (
            parameter("maximum_iterations", {"type": "constant", "value": "\u00b2"}),
            f"{AGENT}.agent_parameters.maximum_iterations: must be a whole number",
        ),
        (
            parameter("model", {"provider": "langgenius/openai/openai", "name": "gpt-4o"}),
            f"{AGENT}.agent_parameters.model: must name the model ({{type: constant",
        ),
        (
            parameter("maximum_iterations", {"type": "constant", "value": 0}),
            f"{AGENT}.agent_parameters.maximum_iterations: must be a whole number from 1 to 99",
        ),
        (parameter("query", None), f"{AGENT}.agent_parameters.query: is required"),
        (
            parameter("model", {"type": "constant", "value": "gpt-4o"}),
            f"{AGENT}.agent_parameters.model: must name the model",
        ),
        (
            parameter("query", {"type": "variable", "value": "question"}),
            f"{AGENT}.agent_parameters.query.value: must be a variable selector",
        ),
    ],
)
def test_an_agent_node_this_server_cannot_run_is_refused_when_saved(
    service_admin: Admin, edit: Edit, says: str
) -> None:
    dsl = copy.deepcopy(document())
    edit(dsl)
    created = service_admin.client.post(
        "/console/api/apps", json={"name": "Agent", "mode": "workflow"}
    )
    app_id = created.json()["data"]["id"]
    try:
        synced = service_admin.client.post(
            f"/console/api/apps/{app_id}/workflows/draft",
            json={"graph": dsl["workflow"]["graph"], "features": {}},
        )
        support.assert_envelope(synced, 400, "invalid_param", says)
        imported = service_admin.client.post(
            "/console/api/apps/imports",
            json={"mode": "yaml-content", "yaml_content": yaml.safe_dump(dsl)},
        )
        assert imported.json()["status"] == "failed", imported.text
        assert says.split(": ", 1)[-1][:40] in imported.json()["error"]
    finally:
        service_admin.client.delete(f"/console/api/apps/{app_id}")
