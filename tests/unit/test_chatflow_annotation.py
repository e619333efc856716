"""A chatflow turn answered by an annotation (`core/apps/workflow.py`), on the in-memory log
with the search given as a function: one `message` with the whole answer and no workflow
event; a turn resumed after its worker died sends it as `message_replace` (a follower
assembles it once); a failed search lets the workflow answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conduit.core.apps.annotations import AnnotationHit, AnnotationPlan
from conduit.core.apps.workflow import ChatTurn, WorkflowExecution, WorkflowRunBody
from conduit.core.runs.eventlog.memory import MemoryEventLog
from conduit.core.runs.spec import RunSpec
from conduit.core.runs.status import RunStatus
from conduit.core.workflow.engine import Restored, RunLimits
from conduit.core.workflow.nodes.registry import NODES

pytestmark = pytest.mark.timeout(30)

PLAN = AnnotationPlan(
    tenant_id="t",
    app_id="a",
    query="refund window?",
    score_threshold=0.9,
    embedding_provider="conduit",
    embedding_model="m",
)
HIT = AnnotationHit(id="ann-1", answer="Thirty days.", score=0.97, account_id="u", account_name="U")
# Start, then an answer node that echoes the query: what runs when no annotation answers.
GRAPH = {
    "nodes": [
        {"id": "start", "data": {"type": "start", "title": "Start", "variables": []}},
        {
            "id": "answer",
            "data": {"type": "answer", "title": "Answer", "answer": "{{#sys.query#}}"},
        },
    ],
    "edges": [{"id": "e", "source": "start", "target": "answer"}],
}


class Services:
    limits: Any = None

    def environment(self, variables: Any) -> dict[str, Any]:
        return {}


def spec() -> RunSpec:
    body = WorkflowRunBody(
        workflow_run_id="run-1",
        workflow_id="wf-1",
        graph=GRAPH,
        inputs={},
        system={"query": PLAN.query},
        mode="advanced-chat",
        chat=ChatTurn(message_id="m-1", conversation_id="c-1", query=PLAN.query),
        annotation=PLAN,
    )
    restored = WorkflowRunBody.from_json(body.to_json())  # as the executor gets it
    assert restored.annotation == PLAN
    return RunSpec("task-1", "workflow", "a", "t", "owner", 0, restored)


async def execute(
    match: Any, *, resumed: bool = False, restored: dict[str, Any] | None = None
) -> tuple[list[tuple[str, dict[str, Any]]], Any]:
    log = MemoryEventLog()
    await log.create("task-1")

    async def restore(run_id: str) -> dict[str, Any]:
        return restored or {}

    execution = WorkflowExecution(
        spec(),
        NODES,
        Services(),  # type: ignore[arg-type]
        RunLimits(),
        restore=restore if resumed else None,
        match_annotation=match,
    )
    await execution.run(log)
    events = await log.read("task-1", after=0, wait=0)
    assert events is not None
    return [(e.event, e.payload) for e in events], execution.result(RunStatus.SUCCEEDED, None)


async def found(plan: AnnotationPlan) -> AnnotationHit:
    assert plan == PLAN
    return HIT


def test_an_annotated_turn_sends_the_answer_whole_and_runs_no_node() -> None:
    events, result = asyncio.run(execute(found))
    assert [name for name, _ in events] == ["message"]
    payload = events[0][1]
    assert (payload["answer"], payload["message_id"], payload["conversation_id"]) == (
        "Thirty days.",
        "m-1",
        "c-1",
    )
    assert result.status == "succeeded" and result.answer == "Thirty days."
    assert result.total_steps == 0 and result.node_executions == []
    assert result.outputs == {"answer": "Thirty days."}
    assert result.annotation_reply == {"id": "ann-1", "account": {"id": "u", "name": "U"}}
    assert result.conversation_variables is None  # nothing to write back


def test_a_resumed_annotated_turn_replaces_the_answer_instead_of_adding_to_it() -> None:
    events, result = asyncio.run(execute(found, resumed=True))
    assert [name for name, _ in events] == ["message_replace"]
    assert events[0][1]["answer"] == "Thirty days."
    assert result.annotation_reply is not None


def test_a_failed_search_lets_the_workflow_answer() -> None:
    async def broken(plan: AnnotationPlan) -> AnnotationHit | None:
        raise RuntimeError("the embedding model is down")

    events, result = asyncio.run(execute(broken))
    names = [name for name, _ in events]
    assert names[0] == "workflow_started" and "message" in names
    assert result.answer == PLAN.query and result.annotation_reply is None


def test_a_resumed_turn_that_finds_no_annotation_now_takes_back_the_first_answer() -> None:
    async def nothing(plan: AnnotationPlan) -> AnnotationHit | None:
        return None

    events, result = asyncio.run(execute(nothing, resumed=True))
    names = [name for name, _ in events]
    # The first execution's `message` (if it sent one) replaced by nothing, then the workflow.
    assert names[:2] == ["message_replace", "workflow_started"]
    assert events[0][1]["answer"] == ""
    assert result.answer == PLAN.query and result.annotation_reply is None


def test_a_resumed_turn_whose_workflow_had_run_nodes_is_not_searched_again() -> None:
    async def must_not_search(plan: AnnotationPlan) -> AnnotationHit | None:
        raise AssertionError("a turn whose workflow ran is not searched again")

    # The start node ended in the first execution: it ran the workflow.
    restored = {"start": Restored(outputs={}, handles=["source"])}
    events, result = asyncio.run(execute(must_not_search, resumed=True, restored=restored))
    assert events[0][0] == "workflow_started"
    assert result.answer == PLAN.query
