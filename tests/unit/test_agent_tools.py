"""The built-in tools (their answers, the maths evaluator's refusals), a tool's checking of
its arguments, the ReAct parser on streamed pieces, and an agent app's plan."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conduit.core.apps.agent import AgentPlan, ReactParser, agent_plan
from conduit.core.tools import builtin
from conduit.core.tools.base import ToolError, ToolInputError


def maths(expression: str) -> str:
    return builtin.eval_expression({"expression": expression})


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("2 + 3 * 4", "14"),
        ("(2 + 3) * 4", "20"),
        ("2 ** 10", "1024"),
        ("9 ^ 2", "81"),
        ("7 // 2", "3"),
        ("7 % 4", "3"),
        ("-3 + +2", "-1"),
        ("sqrt(16) + abs(-2)", "6"),
        ("round(pi, 3)", "3.142"),
        ("max(1, 5, 3) - min(4, 2)", "3"),
        ("factorial(10)", "3628800"),
        ("round(1234.5, -2)", "1200"),
        ("1 / 3", "0.333333333333333"),
        ("log(e)", "1"),
    ],
)
def test_maths_computes(expression: str, value: str) -> None:
    assert maths(expression) == value


@pytest.mark.parametrize(
    ("expression", "kind", "says"),
    [
        ("__import__('os').system('id')", ToolInputError, "The expression may hold numbers"),
        ("(1).__class__", ToolInputError, "The expression may hold numbers"),
        ("[1, 2]", ToolInputError, "The expression may hold numbers"),
        ("'a' * 3", ToolInputError, "The expression may hold numbers"),
        ("open", ToolInputError, "Unknown name 'open'"),
        ("9 ** 9 ** 9", ToolInputError, "more than 1000 digits"),
        ("factorial(100000)", ToolInputError, "factorial takes a whole number"),
        ("round(1, -10**9)", ToolInputError, "round takes a whole number of digits"),
        ("(-1) ** 0.5", ToolError, "not a real number"),
        ("1 / 0", ToolError, "Division by zero"),
        ("sqrt(-1)", ToolError, "cannot be computed"),
        ("10.0 ** 400", ToolError, "cannot be computed"),
        ("2 +", ToolInputError, "not an arithmetic expression"),
        ("1" + "+1" * 600, ToolInputError, "longer than 1000 characters"),
        ("(" * 400 + "1" + ")" * 400, ToolInputError, "not an arithmetic expression"),
        ("-" * 999 + "1", ToolInputError, ""),
    ],
)
def test_maths_refuses_what_is_not_arithmetic_or_too_big(
    expression: str, kind: type[Exception], says: str
) -> None:
    with pytest.raises(kind) as raised:
        maths(expression)
    assert says in str(raised.value)


def test_time_tools() -> None:
    assert builtin.weekday({"year": 2000, "month": 1, "day": 1}) == ("January 1, 2000 is Saturday.")
    converted = builtin.convert_timezone(
        {
            "current_time": "2024-07-01 12:00:00",
            "current_timezone": "Europe/Paris",
            "target_timezone": "America/New_York",
        }
    )
    assert converted == "2024-07-01 06:00:00"
    assert len(builtin.current_time({"timezone": "UTC", "format": "%Y"})) == 4
    with pytest.raises(ToolInputError, match="timezone must be a time zone"):
        builtin.current_time({"timezone": "Nowhere/Land"})
    with pytest.raises(ToolInputError, match="Not a date"):
        builtin.weekday({"year": 2023, "month": 2, "day": 29})


def test_a_tool_checks_and_coerces_its_arguments() -> None:
    weekday = builtin.find("time", "weekday")
    assert weekday is not None
    assert weekday.arguments({"year": "2024", "month": 2.0, "day": 1}, {}) == {
        "year": 2024,
        "month": 2,
        "day": 1,
    }
    with pytest.raises(ToolInputError, match="month is required"):
        weekday.arguments({"year": 2024, "day": 1}, {})
    with pytest.raises(ToolInputError, match="day must be a number"):
        weekday.arguments({"year": 2024, "month": 1, "day": "first"}, {})
    clock = builtin.find("time", "current_time")
    assert clock is not None
    # The app's settings, not the model's: the model is not offered them.
    assert set(clock.function()["function"]["parameters"]["properties"]) == set()
    settings = clock.settings({"timezone": "Asia/Tokyo"})
    assert settings == {"timezone": "Asia/Tokyo", "format": builtin.DATETIME_FORMAT}
    assert clock.arguments({"timezone": "UTC"}, settings)["timezone"] == "Asia/Tokyo"
    with pytest.raises(ToolInputError, match="timezone must be a time zone"):
        clock.settings({"timezone": "Mars/Base"})


def streamed(pieces: list[str]) -> tuple[str, Any]:
    parser = ReactParser()
    shown = "".join(parser.feed(piece) for piece in pieces)
    return shown, parser.end()


def test_react_parser_holds_a_thought_and_its_action() -> None:
    text = 'Thought: I need maths.\nAction:\n```json\n{"action": "eval_expression", "action_input": {"expression": "1+1"}}\n```'
    shown, step = streamed([text[i : i + 3] for i in range(0, len(text), 3)])
    assert shown == ""
    assert (step.thought, step.action, step.action_input) == (
        "I need maths.",
        "eval_expression",
        {"expression": "1+1"},
    )


def test_react_parser_streams_the_final_answer_as_it_comes() -> None:
    parser = ReactParser()
    assert parser.feed("Thought: I know it.\nFinal") == ""
    assert parser.feed(" Answer: Forty") == "Forty"
    assert parser.feed("-two.") == "-two."
    assert parser.end().rest == "" and parser.end().action is None


def test_react_parser_takes_text_out_of_the_format_as_the_answer() -> None:
    shown, step = streamed(["Hel", "lo there, friend."])
    assert shown == "Hello there, friend." and step.action is None
    shown, step = streamed(["Tho"])  # too short to tell: the whole text, at the end
    assert shown == "" and step.rest == "Tho"
    shown, step = streamed(["Thought: the answer is 4 but I wrote no marker."])
    assert shown == "" and step.rest == "the answer is 4 but I wrote no marker."
    shown, step = streamed(['Action: {"action": "Final Answer", "action_input": "Four."}'])
    assert step.action is None and step.rest == "Four."
    shown, step = streamed(
        ['Thought: x\nAction: {"action": "eval_expression", "action_input": "2*2"}']
    )
    assert (step.action, step.action_input) == ("eval_expression", "2*2")


def test_an_apps_plan_keeps_its_served_enabled_tools() -> None:
    config = {
        "agent_mode": {
            "enabled": True,
            "strategy": "function_call",
            "max_iteration": 500,
            "tools": [
                {"provider_id": "maths", "tool_name": "eval_expression", "enabled": True},
                {"provider_id": "time", "tool_name": "weekday", "enabled": False},
                {"provider_id": "google", "tool_name": "search"},
                {"provider_id": "time", "tool_name": "weekday"},  # no `enabled`: off (Dify's)
                {
                    "provider_id": "langgenius/time/time",  # Dify 1.x's id
                    "tool_name": "current_time",
                    "tool_parameters": {"timezone": "Asia/Tokyo"},
                    "enabled": True,
                },
            ],
        }
    }
    plan = agent_plan(config)
    assert plan.strategy == "function_call" and plan.max_iteration == 99
    assert [(t.provider_id, t.tool_name) for t in plan.tools] == [
        ("maths", "eval_expression"),
        ("time", "current_time"),
    ]
    assert plan.tools[1].settings["timezone"] == "Asia/Tokyo"
    assert agent_plan(config, function_calling=False).strategy == "react"
    config["agent_mode"]["strategy"] = "cot"  # Dify's older name of ReAct
    assert agent_plan(config).strategy == "react"
    assert AgentPlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    assert agent_plan({}).max_iteration == 5 and agent_plan({}).tools == ()


def test_react_parser_reads_markdown_markers_and_a_final_answer_only_at_a_lines_start() -> None:
    shown, step = streamed(
        ['**Thought:** I need it.\nAction:\n```\n{"action": "weekday", "action_input": {}}\n```']
    )
    assert shown == "" and step.action == "weekday"
    text = 'Thought: before the Final Answer: I call it.\nAction: {"action": "weekday", "action_input": {}}'
    shown, step = streamed([text])
    assert shown == "" and step.action == "weekday"
    shown, step = streamed(['Thought: done\nHere:\n```json\n{"a": 1}\n```'])
    assert step.action is None and step.rest.startswith("done\nHere:") and '"a": 1' in step.rest
    shown, step = streamed(["**Final Answer:** Four."])
    assert shown == "Four." and step.action is None


def test_a_tool_called_twice_in_a_round_lists_its_values() -> None:
    from conduit.core.apps.agent import _by_name
    from conduit.core.llm.provider import ToolCall

    calls = [ToolCall("1", "eval_expression", ""), ToolCall("2", "weekday", ""),
             ToolCall("3", "eval_expression", "")]  # fmt: skip
    assert json.loads(_by_name(calls, ["2", "Monday", "4"])) == {
        "eval_expression": ["2", "4"],
        "weekday": "Monday",
    }
