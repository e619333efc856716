"""The agent node's settings as Dify 1.x writes them (`core/workflow/agent_node.py`), read
before a run (only what is constant is checked) and in it (values from the run), and what a
node's record keeps when its agent log is big (`services/runs/workflow_store.py`)."""

from __future__ import annotations

from typing import Any

import pytest

from conduit.core.tools.base import ToolError
from conduit.core.workflow import agent_node
from conduit.core.workflow.events import NodeExecution
from conduit.services.runs.workflow_store import HANDLES, MAX_STORED_VALUE, _node_row

WHERE = "node 'a' (A)"


def node(*tools: dict[str, Any], **parameters: Any) -> dict[str, Any]:
    return {
        "type": "agent",
        "agent_strategy_provider_name": "langgenius/agent/agent",
        "agent_strategy_name": "ReAct",
        "agent_parameters": {
            "model": {"type": "constant", "value": {"provider": "local", "model": "m"}},
            "tools": {"type": "constant", "value": [{"enabled": True, **t} for t in tools]},
            "query": {"type": "constant", "value": "{{#sys.query#}}"},
            **parameters,
        },
    }


WEEKDAY = {"type": "builtin", "provider_name": "langgenius/time/time", "tool_name": "weekday"}
CLOCK = {"type": "builtin", "provider_name": "time", "tool_name": "current_time"}


def test_values_from_the_run_are_checked_when_it_runs() -> None:
    data = node(
        {**WEEKDAY, "parameters": {
            "year": {"auto": 0, "value": {"type": "mixed", "value": "{{#start.year#}}"}},
            "month": {"auto": 0, "value": {"type": "variable", "value": ["start", "month"]}},
            "day": {"auto": 1, "value": None},
        }},
        {**CLOCK, "settings": {"timezone": {"value": {"type": "variable", "value": ["start", "tz"]}}}},
    )  # fmt: skip
    before = agent_node.parse(data, WHERE)
    weekday, clock = before.tools
    assert (weekday.fixed, clock.settings) == ({}, {})  # not known yet, not refused
    assert before.strategy == "react" and before.model["name"] == "m"
    values = {("start", "month"): "12", ("start", "tz"): "Asia/Tokyo"}
    during = agent_node.parse(
        data, WHERE, render=lambda text: text.replace("{{#start.year#}}", "2024"),
        find=lambda selector: values[tuple(selector)],
    )  # fmt: skip
    weekday, clock = during.tools
    assert weekday.fixed == {"year": 2024, "month": 12}
    assert clock.settings["timezone"] == "Asia/Tokyo"
    values[("start", "tz")] = "Moon/Base"
    with pytest.raises(ToolError, match=r"tools\[1\]\.settings: timezone must be a time zone"):
        agent_node.parse(
            data, WHERE, render=lambda text: text.replace("{{#start.year#}}", "2024"),
            find=lambda selector: values[tuple(selector)],
        )  # fmt: skip


@pytest.mark.parametrize(
    ("rounds", "expected"),
    [(1, 1), (3.0, 3), (" 7 ", 7), ("99", 99)],
)
def test_rounds_are_whole_numbers_however_written(rounds: Any, expected: int) -> None:
    data = node(maximum_iterations={"type": "constant", "value": rounds})
    assert agent_node.parse(data, WHERE).max_iteration == expected


@pytest.mark.parametrize("rounds", [0, 100, 2.5, "²", "three", True, None])
def test_other_rounds_are_refused_naming_the_field(rounds: Any) -> None:
    data = node(maximum_iterations={"type": "constant", "value": rounds})
    if rounds is None:  # (no value: the default)
        assert agent_node.parse(data, WHERE).max_iteration == agent_node.DEFAULT_ROUNDS
        return
    with pytest.raises(ToolError, match=r"agent_parameters\.maximum_iterations: must be a whole"):
        agent_node.parse(data, WHERE)


def test_a_big_agent_log_is_cut_alone_and_the_engines_keys_stay_whole() -> None:
    log = [{"id": str(n), "data": {"tool_response": "x" * 8000}} for n in range(12)]
    execution = NodeExecution(
        id="e", node_id="a", node_type="agent", title="A", index=2, predecessor_node_id="s",
        metadata={"total_tokens": 42, "agent_log": log}, handles=["source"], iteration_index=3,
    )  # fmt: skip
    row = _node_row({}, execution)
    kept = row["execution_metadata"]
    assert kept["total_tokens"] == 42 and kept[HANDLES] == ["source"]
    assert kept["iteration_index"] == 3
    assert kept["agent_log"]["__truncated__"] is True
    assert kept["agent_log"]["size"] > MAX_STORED_VALUE
