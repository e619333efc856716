"""Agent-chat apps with tools (Dify's `agent_mode`), against a real server whose model is the
fake OpenAI-compatible server (it calls the functions a message names and answers with their
results; in ReAct's format when the prompt asks for it): the stream's `agent_thought` /
`agent_message` events in Dify's order, the built-in tools' real answers (the maths and time
providers), both strategies, the rounds' limit, a tool's error handed to the model, the
message's `agent_thoughts`, async runs, the web tier, the checks when the app is saved and a
DSL import of tools this server does not serve. Both modes (`CONDUIT_TEST_MODE`)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from tests import support
from tests.e2e.conftest import Admin, ServiceApp, service_app
from tests.e2e.sse import Frame, frames
from tests.e2e.test_web_api import site_code

assert_envelope = support.assert_envelope

MATHS = {"provider_type": "builtin", "provider_id": "maths", "tool_name": "eval_expression"}
WEEKDAY = {"provider_type": "builtin", "provider_id": "time", "tool_name": "weekday"}


def clock(timezone: str = "Asia/Tokyo") -> dict[str, Any]:
    return {
        "provider_type": "builtin",
        "provider_id": "time",
        "tool_name": "current_time",
        "tool_parameters": {"timezone": timezone, "format": "%Y-%m-%d %H:%M %Z"},
    }


def agent_config(*tools: dict[str, Any], **mode: Any) -> dict[str, Any]:
    return {
        "pre_prompt": "You are a careful assistant.",
        "agent_mode": {
            "enabled": True,
            "strategy": "function_call",
            "max_iteration": 5,
            "tools": [{**tool, "enabled": True} for tool in tools],
            **mode,
        },
    }


@pytest.fixture
def make_agent(service_stack: support.Stack, service_admin: Admin, upstream: Any) -> Iterator[Any]:
    upstream.reset()
    made: list[ServiceApp] = []

    def make(*tools: dict[str, Any], **mode: Any) -> ServiceApp:
        found = service_app(
            service_stack, service_admin, mode="agent-chat", **agent_config(*tools, **mode)
        )
        made.append(found)
        return found

    yield make
    for app in made:
        app.client.close()


def streamed(app: ServiceApp, query: str, **extra: Any) -> list[Frame]:
    body = {"inputs": {}, "query": query, "user": "ada", "response_mode": "streaming", **extra}
    with app.client.stream("POST", "/chat-messages", json=body) as response:
        assert response.status_code == 200, response.read()
        return [frame for frame in frames(response) if frame.event != "ping"]


def answer(events: list[Frame]) -> str:
    return "".join(f.data["answer"] for f in events if f.event == "agent_message")


def thoughts(events: list[Frame]) -> dict[str, dict[str, Any]]:
    """Each round's last `agent_thought`, by id, in the order the rounds began."""
    last: dict[str, dict[str, Any]] = {}
    for frame in events:
        if frame.event == "agent_thought":
            last[frame.data["id"]] = frame.data
    return last


def agent_requests(upstream: Any) -> list[dict[str, Any]]:
    """The agent's requests to the model (not the conversation's naming), in order."""
    return [
        record
        for record in upstream.stats()["log"]
        if record["messages"]
        and str(record["messages"][0].get("content")).startswith("You are a careful assistant.")
    ]


def stored_thoughts(app: ServiceApp, conversation_id: str) -> list[dict[str, Any]]:
    listed = app.client.get("/messages", params={"user": "ada", "conversation_id": conversation_id})
    assert listed.status_code == 200, listed.text
    return list(listed.json()["data"][-1]["agent_thoughts"])


def test_an_agent_calls_a_tool_and_answers_with_its_result(make_agent: Any, upstream: Any) -> None:
    app = make_agent(MATHS)
    events = streamed(app, 'Please compute eval_expression {"expression": "6*7 + 2**3"}')
    names = [f.event for f in events]
    # Dify's order: a round's empty thought first, its text, the thought with its call, then
    # with its observation; the next round; message_end.
    assert names[0] == "agent_thought" and names[-1] == "message_end", names
    assert events[0].data["position"] == 1 and events[0].data["thought"] == ""
    assert answer(events) == "Calling eval_expression.Tool said: 50"
    rounds = list(thoughts(events).values())
    assert [r["position"] for r in rounds] == [1, 2]
    first, second = rounds
    assert first["tool"] == "eval_expression"
    assert json.loads(first["tool_input"]) == {"eval_expression": {"expression": "6*7 + 2**3"}}
    assert json.loads(first["observation"]) == {"eval_expression": "50"}
    assert first["thought"] == "Calling eval_expression."
    assert second["tool"] == "" and second["thought"] == "Tool said: 50"
    for frame in events:
        assert frame.data["task_id"] and frame.data["message_id"]
        assert frame.data["conversation_id"]
    # The model saw the tool as a function, then the call's result in a `tool` message.
    asked = agent_requests(upstream)
    assert [r["tools"] for r in asked] == [["eval_expression"], ["eval_expression"]]
    assert [r["tool_calls"] for r in asked] == [["eval_expression"], []]
    result = asked[1]["messages"][-1]
    assert result["role"] == "tool" and result["content"] == "50"
    assert result["tool_call_id"] == asked[1]["messages"][-2]["tool_calls"][0]["id"]
    # Both rounds' tokens count.
    usage = events[-1].data["metadata"]["usage"]
    assert usage["total_tokens"] > 0
    assert usage["completion_tokens"] >= 5  # both rounds' words
    stored = stored_thoughts(app, events[-1].data["conversation_id"])
    assert [(t["position"], t["tool"], t["observation"]) for t in stored] == [
        (1, "eval_expression", first["observation"]),
        (2, "", ""),
    ]
    assert stored[0]["message_id"] == events[-1].data["message_id"]
    assert stored[0]["tool_labels"]["eval_expression"]["en_US"] == "Evaluate Expression"


def test_two_tools_in_one_round_each_with_the_apps_settings(make_agent: Any) -> None:
    app = make_agent(clock("Asia/Tokyo"), WEEKDAY)
    events = streamed(
        app, 'What is current_time, and weekday {"year": 2024, "month": 2, "day": 29}?'
    )
    first = next(iter(thoughts(events).values()))
    assert first["tool"] == "current_time;weekday"
    observed = json.loads(first["observation"])
    assert observed["weekday"] == "February 29, 2024 is Thursday."
    # The app's time zone and format, not the model's: a real clock reading.
    shown = datetime.strptime(observed["current_time"].removesuffix(" JST"), "%Y-%m-%d %H:%M")
    now = datetime.now(ZoneInfo("Asia/Tokyo")).replace(tzinfo=None)
    assert observed["current_time"].endswith(" JST")
    assert abs(now - shown) < timedelta(minutes=2)
    assert answer(events).startswith("Calling current_time, weekday.Tool said: ")


def test_react_strategy_reads_the_models_action_and_streams_its_final_answer(
    make_agent: Any, upstream: Any
) -> None:
    app = make_agent(MATHS, strategy="react")
    events = streamed(app, 'Use eval_expression {"expression": "2 * (3 + 4)"} please')
    rounds = list(thoughts(events).values())
    assert rounds[0]["thought"] == "I should use eval_expression."
    assert json.loads(rounds[0]["tool_input"]) == {"eval_expression": {"expression": "2 * (3 + 4)"}}
    assert json.loads(rounds[0]["observation"]) == {"eval_expression": "14"}
    # Only the final answer streams: the thought and its action are not the answer.
    assert answer(events) == 'Tool said: {"eval_expression": "14"}'
    asked = agent_requests(upstream)
    assert [r["tools"] for r in asked] == [[], []]  # no functions: the prompt describes them
    system = asked[0]["messages"][0]["content"]
    assert system.startswith("You are a careful assistant.") and "eval_expression" in system
    assert "Final Answer:" in system
    # The model's own "Observation:" is cut by the stop sequence; the real one follows.
    assert asked[1]["messages"][-2]["role"] == "assistant"
    assert "(the fake would make one up)" not in asked[1]["messages"][-2]["content"]
    assert asked[1]["messages"][-1]["content"].startswith('Observation: {"eval_expression": "14"}')


def test_the_last_round_offers_no_tools_so_the_run_ends_with_an_answer(
    make_agent: Any, upstream: Any
) -> None:
    app = make_agent(MATHS, max_iteration=2)
    upstream.control(mode="tool-loop", times=10)  # calls a function whenever offered one
    events = streamed(app, "Keep calculating.")
    assert events[-1].event == "message_end"
    # Two rounds that may call tools, then one that may not (as Dify's max_iteration).
    rounds = list(thoughts(events).values())
    assert [r["position"] for r in rounds] == [1, 2, 3]
    assert [r["tool"] for r in rounds] == ["eval_expression", "eval_expression", ""]
    asked = agent_requests(upstream)
    assert [r["tools"] for r in asked] == [["eval_expression"], ["eval_expression"], []]
    # The model called it without the required input: told so, as its observation.
    assert json.loads(rounds[0]["observation"]) == {
        "eval_expression": "Error: expression is required"
    }


def test_a_tools_error_is_the_models_observation_and_the_run_succeeds(make_agent: Any) -> None:
    app = make_agent(MATHS)
    events = streamed(app, 'eval_expression {"expression": "1/0"} and eval_expression')
    first = next(iter(thoughts(events).values()))
    assert json.loads(first["observation"]) == {"eval_expression": "Error: Division by zero."}
    assert events[-1].event == "message_end"
    refused = streamed(app, 'eval_expression {"expression": "__import__(\'os\')"}')
    observed = json.loads(next(iter(thoughts(refused).values()))["observation"])["eval_expression"]
    assert observed.startswith("Error: The expression may hold numbers")


def test_an_agent_without_tools_answers_in_one_round(make_agent: Any, upstream: Any) -> None:
    app = make_agent()
    events = streamed(app, "Hello there")
    assert [f.event for f in events] == [
        "agent_thought",
        *["agent_message"] * (len(events) - 3),
        "agent_thought",
        "message_end",
    ]
    assert answer(events) == "You said: Hello there"
    assert agent_requests(upstream)[0]["tools"] == []


def test_blocking_is_refused_and_async_gives_the_agents_answer(make_agent: Any) -> None:
    app = make_agent(MATHS)
    refused = app.client.post(
        "/chat-messages",
        json={"inputs": {}, "query": "hi", "user": "ada", "response_mode": "blocking"},
    )
    assert_envelope(refused, 400, "invalid_param", "Agent Chat App does not support blocking mode")
    submitted = app.client.post(
        "/chat-messages",
        json={
            "inputs": {},
            "query": 'eval_expression {"expression": "3*3"}',
            "user": "ada",
            "response_mode": "async",
        },
    )
    assert submitted.status_code == 202, submitted.text
    task_id = submitted.json()["task_id"]
    deadline = time.monotonic() + 30
    while True:
        status = app.client.get(f"/tasks/{task_id}", params={"user": "ada"}).json()
        if status["status"] not in ("pending", "running") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status["status"] == "succeeded", status
    assert status["result"]["answer"] == "Calling eval_expression.Tool said: 9"
    assert status["result"]["mode"] == "agent-chat"


def test_the_web_tier_streams_the_agents_events(
    make_agent: Any, service_stack: support.Stack, service_admin: Admin
) -> None:
    app = make_agent(MATHS)
    code = site_code(service_admin, app.app_id)
    with httpx.Client(base_url=service_stack.base_url, timeout=30) as web:
        token = web.get("/api/passport", headers={"X-App-Code": code}).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "X-App-Code": code}
        with web.stream(
            "POST",
            "/api/chat-messages",
            headers=headers,
            json={
                "inputs": {},
                "query": 'eval_expression {"expression": "10-3"}',
                "response_mode": "streaming",
            },
        ) as response:
            assert response.status_code == 200, response.read()
            events = [f for f in frames(response) if f.event != "ping"]
        assert answer(events) == "Calling eval_expression.Tool said: 7"
        conversation = events[-1].data["conversation_id"]
        listed = web.get(
            "/api/messages", headers=headers, params={"conversation_id": conversation}
        ).json()["data"]
    assert listed[-1]["agent_thoughts"][0]["tool"] == "eval_expression"


@pytest.mark.parametrize(
    ("mode", "mentions"),
    [
        ({"strategy": "plan"}, "agent_mode.strategy: must be one of the following"),
        ({"max_iteration": 0}, "agent_mode.max_iteration: must be an integer between 1 and 99"),
        (
            {"tools": [{"provider_type": "builtin", "provider_id": "google", "tool_name": "s"}]},
            "agent_mode.tools[0].provider_id: no built-in tool provider 'google'",
        ),
        (
            {"tools": [{"provider_type": "builtin", "provider_id": "time", "tool_name": "x"}]},
            "agent_mode.tools[0].tool_name: time has no tool 'x'; its tools: current_time",
        ),
        ({"tools": [clock("Mars/Olympus")]}, "tool_parameters: timezone must be a time zone"),
        (
            {"tools": [{"provider_type": "api", "provider_id": "x", "tool_name": "y"}]},
            "agent_mode.tools[0].provider_id: no custom tool provider 'x' in this workspace",
        ),
        (
            {"tools": [{"provider_type": "mcp", "provider_id": "x", "tool_name": "y"}]},
            "agent_mode.tools[0].provider_type: 'mcp' tools are not served",
        ),
    ],
)
def test_an_agents_config_is_checked_when_saved(
    service_admin: Admin, mode: dict[str, Any], mentions: str
) -> None:
    created = service_admin.client.post(
        "/console/api/apps",
        json={"name": "Agent", "mode": "agent-chat", "model_config": agent_config(MATHS)},
    )
    assert created.status_code == 201, created.text
    app_id = created.json()["data"]["id"]
    config = agent_config(MATHS)
    config["agent_mode"].update(mode)
    saved = service_admin.client.post(f"/console/api/apps/{app_id}/model-config", json=config)
    assert_envelope(saved, 400, "invalid_param", mentions)
    kept = service_admin.client.get(f"/console/api/apps/{app_id}/model-config").json()["data"]
    assert kept["agent_mode"]["tools"][0]["tool_name"] == "eval_expression"


def test_a_dsl_import_keeps_the_served_tools_and_warns_of_the_others(
    service_admin: Admin, upstream: Any, service_stack: support.Stack
) -> None:
    document = {
        "version": "0.3.0",
        "kind": "app",
        "app": {"name": "Imported agent", "mode": "agent-chat", "icon": "🤖"},
        "model_config": agent_config(
            MATHS,
            {"provider_type": "builtin", "provider_id": "google", "tool_name": "google_search"},
            {"provider_type": "api", "provider_id": "abc", "tool_name": "lookup"},
            strategy="react",
        ),
    }
    imported = service_admin.client.post(
        "/console/api/apps/imports",
        json={"mode": "yaml-content", "yaml_content": yaml.safe_dump(document)},
    )
    assert imported.status_code == 200, imported.text
    body = imported.json()
    assert body["status"] == "completed-with-warnings", body
    warned = " ".join(body.get("warnings") or [])
    assert "google_search" in warned and "lookup" in warned, body
    app_id = body["app_id"]
    config = service_admin.client.get(f"/console/api/apps/{app_id}/model-config").json()["data"]
    assert [t["tool_name"] for t in config["agent_mode"]["tools"]] == ["eval_expression"]
    key = service_admin.client.post(f"/console/api/apps/{app_id}/api-keys").json()["data"]["token"]
    with httpx.Client(
        base_url=f"{service_stack.base_url}/v1", headers={"Authorization": f"Bearer {key}"}
    ) as client:
        app = ServiceApp(service_stack, app_id, key, client)
        events = streamed(app, 'eval_expression {"expression": "5+5"}')
    assert answer(events) == 'Tool said: {"eval_expression": "10"}'


def test_the_console_lists_the_tools_and_meta_gives_their_icons(
    make_agent: Any, service_admin: Admin
) -> None:
    console = service_admin.client
    listed = console.get("/console/api/workspaces/current/tool-providers")
    assert listed.status_code == 200, listed.text
    by_id = {p["id"]: p for p in listed.json()}
    assert set(by_id) == {"time", "maths"}
    assert by_id["time"]["type"] == "builtin" and by_id["time"]["is_team_authorization"]
    current = next(t for t in by_id["time"]["tools"] if t["name"] == "current_time")
    timezone = next(p for p in current["parameters"] if p["name"] == "timezone")
    assert (timezone["form"], timezone["default"]) == ("form", "UTC")
    assert (
        console.get("/console/api/workspaces/current/tool-providers", params={"type": "api"}).json()
        == []
    )
    tools = console.get("/console/api/workspaces/current/tool-provider/builtin/maths/tools")
    assert [t["name"] for t in tools.json()] == ["eval_expression"]
    info = console.get(
        "/console/api/workspaces/current/tool-provider/builtin/langgenius/time/time/info"
    )  # Dify 1.x's id of the same provider
    assert info.status_code == 200 and info.json()["id"] == "time", info.text
    builtins = console.get("/console/api/workspaces/current/tools/builtin").json()
    assert [p["id"] for p in builtins] == ["time", "maths"]
    assert_envelope(
        console.get("/console/api/workspaces/current/tool-provider/builtin/google/tools"),
        404,
        "not_found",
        "No built-in tool provider 'google'",
    )
    app = make_agent(MATHS, clock())
    icons = app.client.get("/meta").json()["tool_icons"]
    assert icons == {
        "eval_expression": by_id["maths"]["icon"],
        "current_time": by_id["time"]["icon"],
    }
    code = site_code(service_admin, app.app_id)
    with httpx.Client(base_url=app.stack.base_url, timeout=30) as web:
        token = web.get("/api/passport", headers={"X-App-Code": code}).json()["access_token"]
        shown = web.get(
            "/api/meta", headers={"Authorization": f"Bearer {token}", "X-App-Code": code}
        )
    assert shown.json()["tool_icons"] == icons
