"""The human-input node in the engine: the run pauses once nothing else can run (the other
branches go on), a resumed run takes up its ended nodes and follows the answer's edge; the
node's settings and a submission are checked, naming what is wrong."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from conduit.core.workflow.engine import Restored, RunContext, run_scope
from conduit.core.workflow.events import FormEvent, NodeFinished, WorkflowEvent
from conduit.core.workflow.graph import WorkflowGraph, WorkflowGraphError
from conduit.core.workflow.human_input import (
    TIMEOUT_HANDLE,
    Answer,
    FormDataError,
    HumanInputError,
    HumanInputSpec,
    PendingForm,
    RunPaused,
)
from conduit.core.workflow.nodes.registry import NODES
from conduit.core.workflow.variables import VariablePool
from tests.unit.workflow.test_engine import edge, node

pytestmark = pytest.mark.timeout(60)


def review(node_id: str, **data: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "form_content": "Check {{#start.topic#}}. Note: {{#$output.note#}}",
        "inputs": [
            {
                "type": "paragraph",
                "output_variable_name": "note",
                "default": {"type": "constant", "value": "fine"},
            }
        ],
        "user_actions": [{"id": "yes", "title": "Yes"}, {"id": "no", "title": "No"}],
        "timeout": 2,
        "timeout_unit": "day",
    }
    settings.update(data)
    return node(node_id, "human-input", **settings)


def graph() -> dict[str, Any]:
    """start → side (template) and → ask (human input) → yes: done | no: refused |
    __timeout: late."""
    return {
        "nodes": [
            node("start", "start", variables=[{"variable": "topic", "type": "text-input"}]),
            node(
                "side",
                "template-transform",
                template="side {{ t }}",
                variables=[{"variable": "t", "value_selector": ["start", "topic"]}],
            ),
            review("ask"),
            node(
                "done",
                "template-transform",
                template="{{ a }} {{ n }}",
                variables=[
                    {"variable": "a", "value_selector": ["ask", "__action_id"]},
                    {"variable": "n", "value_selector": ["ask", "note"]},
                ],
            ),
            node("refused", "template-transform", template="refused", variables=[]),
            node("late", "template-transform", template="late", variables=[]),
        ],
        "edges": [
            edge("start", "side"),
            edge("start", "ask"),
            edge("ask", "done", "yes"),
            edge("ask", "refused", "no"),
            edge("ask", "late", TIMEOUT_HANDLE),
        ],
    }


class Services:
    """The run's services as far as the node needs them: the forms it showed, answered."""

    def __init__(self, forms: Mapping[str, tuple[PendingForm, Answer | None]] | None = None):
        self.forms = dict(forms or {})

    async def form_of(self, node_id: str) -> tuple[PendingForm, Answer | None] | None:
        return self.forms.get(node_id)


def run(
    services: Services, restored: dict[str, Restored] | None = None, data: Any = None
) -> tuple[list[WorkflowEvent], VariablePool, RunPaused | None]:
    parsed = WorkflowGraph.parse(data or graph())
    events: list[WorkflowEvent] = []
    pool = VariablePool()
    context = RunContext(
        graph=parsed, nodes=NODES, emit=events.append, inputs={"topic": "x"}, services=services
    )
    try:
        asyncio.run(run_scope(context, parsed.top, pool, restored=restored))
    except RunPaused as paused:
        return events, pool, paused
    return events, pool, None


def finished(events: list[WorkflowEvent]) -> list[str]:
    return [e.execution.node_id for e in events if isinstance(e, NodeFinished)]


def test_the_run_pauses_after_its_other_branches_with_the_form_filled_in() -> None:
    events, pool, paused = run(Services())
    assert paused is not None
    (form,) = paused.forms
    assert form.node_id == "ask" and form.form_content == "Check x. Note: {{#$output.note#}}"
    assert form.resolved_default_values == {"note": "fine"}
    assert form.expiration_time - form.created_at == pytest.approx(2 * 86400, abs=1)
    assert sorted(finished(events)) == ["side", "start"]  # the side branch ran to its end
    (waiting,) = paused.waiting
    assert waiting.execution is not None and waiting.execution.status == "paused"
    assert pool.outputs("side") == {"output": "side x"}


def resumed(answer: Answer) -> tuple[list[WorkflowEvent], VariablePool]:
    _, _, paused = run(Services())
    assert paused is not None
    form = paused.forms[0]
    restored = {
        "start": Restored(outputs={"topic": "x"}, handles=["source"]),
        "side": Restored(outputs={"output": "side x"}, handles=["source"]),
    }
    events, pool, again = run(Services({"ask": (form, answer)}), restored)
    assert again is None
    return events, pool


def test_an_answer_resumes_down_its_action_s_edge_without_running_the_rest_again() -> None:
    events, pool = resumed(Answer(action_id="yes", values={"note": "ok then"}))
    assert finished(events) == ["ask", "done"]
    assert pool.outputs("done") == {"output": "yes ok then"}
    outputs = pool.outputs("ask")
    assert outputs is not None
    assert outputs["__action_value"] == "Yes"
    assert outputs["__rendered_content"] == "Check x. Note: ok then"
    (filled,) = [e for e in events if isinstance(e, FormEvent)]
    assert filled.name == "human_input_form_filled" and filled.data["action_id"] == "yes"


def test_a_form_out_of_time_takes_the_timeout_edge() -> None:
    events, pool = resumed(Answer(action_id="", values={}, timed_out=True))
    assert finished(events) == ["ask", "late"]
    (timeout,) = [e for e in events if isinstance(e, FormEvent)]
    assert timeout.name == "human_input_form_timeout"
    assert pool.outputs("ask") == {
        "__action_id": "",
        "__action_value": "",
        "__rendered_content": "Check x. Note: ",
    }


def test_two_forms_wait_together_and_an_unanswered_one_keeps_its_token() -> None:
    data = graph()
    data["nodes"].append(review("second"))
    data["nodes"].append(node("after", "template-transform", template="after", variables=[]))
    data["edges"] += [edge("side", "second"), edge("second", "after", "yes")]
    _, _, paused = run(Services(), data=data)
    assert paused is not None
    forms = {form.node_id: form for form in paused.forms}
    assert set(forms) == {"ask", "second"}
    restored = {
        "start": Restored(outputs={"topic": "x"}, handles=["source"]),
        "side": Restored(outputs={"output": "side x"}, handles=["source"]),
    }
    answered = Services(
        {"ask": (forms["ask"], Answer("no", {"note": ""})), "second": (forms["second"], None)}
    )
    events, _, again = run(answered, restored, data=data)
    assert again is not None and [f.token for f in again.forms] == [forms["second"].token]
    assert "refused" in finished(events)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"user_actions": []}, "at least one action"),
        ({"user_actions": [{"id": "1a", "title": "x"}]}, "id must be letters"),
        ({"user_actions": [{"id": "a", "title": "x"}, {"id": "a", "title": "y"}]}, "used twice"),
        ({"user_actions": [{"id": "a", "title": "x", "button_style": "loud"}]}, "button_style"),
        ({"inputs": [{"type": "file", "output_variable_name": "f"}]}, "type 'file' is not served"),
        ({"inputs": [{"type": "select", "output_variable_name": "s"}]}, "a select needs"),
        ({"timeout_unit": "week"}, "timeout_unit 'week'"),
        ({"timeout": 0}, "timeout must be a positive number"),
        ({"timeout": 400, "timeout_unit": "day"}, "at most 366 days"),
        ({"delivery_methods": [{"type": "slack"}]}, "type 'slack' is not one of"),
    ],
)
def test_settings_that_cannot_work_are_refused(change: dict[str, Any], message: str) -> None:
    data = graph()
    data["nodes"][2] = review("ask", **change)
    if "user_actions" in change:
        data["edges"] = [e for e in data["edges"] if e["source"] != "ask"]
    with pytest.raises(WorkflowGraphError, match=message):
        WorkflowGraph.parse(data)


def test_a_human_input_inside_an_iteration_is_refused() -> None:
    data = graph()
    data["nodes"] += [
        node("loop", "iteration", iterator_selector=["start", "list"], start_node_id="ls"),
        node("ls", "iteration-start", parent="loop"),
        {**review("inner"), "parentId": "loop"},
    ]
    data["edges"] += [edge("ls", "inner")]
    with pytest.raises(WorkflowGraphError, match="cannot be inside an iteration"):
        WorkflowGraph.parse(data)


def test_a_submission_is_checked_against_the_form() -> None:
    spec = HumanInputSpec.parse(review("ask")["data"])
    assert spec.display_in_ui is False  # no webapp delivery named
    _, _, paused = run(Services())
    assert paused is not None
    form = paused.forms[0]
    assert form.checked({"note": "a"}, "yes") == ("yes", {"note": "a"})
    for values, action, message in [
        ({"note": "a"}, "maybe", "Invalid action: maybe"),
        ({}, "yes", "Missing required inputs: note"),
        ({"note": "a", "x": "b"}, "yes", "Unknown inputs: x"),
        ({"note": ["a"]}, "yes", "Input note must be text"),
        ("text", "yes", "inputs must be an object"),
    ]:
        with pytest.raises(FormDataError, match=message):
            form.checked(values, action)
    with pytest.raises(HumanInputError):
        HumanInputSpec.parse({"user_actions": [{"id": "a", "title": ""}]})
