"""The engine on small graphs: parallel starts, joins, retries, error strategies, timeouts,
stop, limits, and the answer stream's order. Node functions here are the test's own (they
sleep, fail on cue, stream pieces); the real nodes have tests of their own."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from conduit.core.workflow.engine import (
    NodeAborted,
    NodeCall,
    NodeFailed,
    NodeResult,
    RunContext,
    RunLimits,
    StepLimitExceeded,
    run_scope,
)
from conduit.core.workflow.events import (
    ContainerEvent,
    NodeFinished,
    NodeRetried,
    NodeStarted,
    TextChunk,
    WorkflowEvent,
)
from conduit.core.workflow.graph import NODE_TYPES, WorkflowGraph
from conduit.core.workflow.nodes import basic, branch, containers
from conduit.core.workflow.streaming import AnswerStreamer
from conduit.core.workflow.variables import VariablePool

pytestmark = pytest.mark.timeout(60)

TEST_TYPES = NODE_TYPES | {"sleep", "flaky", "pieces"}


async def sleep_node(call: NodeCall) -> NodeResult:
    seconds = float(call.spec.data.get("seconds", 0))
    await asyncio.sleep(seconds)
    if call.spec.data.get("fail"):
        raise NodeFailed(str(call.spec.data["fail"]))
    return NodeResult(outputs={"text": call.spec.data.get("text", call.spec.id)})


FLAKY: dict[str, int] = {}


async def flaky_node(call: NodeCall) -> NodeResult:
    FLAKY[call.spec.id] = FLAKY.get(call.spec.id, 0) + 1
    if FLAKY[call.spec.id] <= int(call.spec.data.get("failures", 0)):
        raise NodeFailed(f"attempt {FLAKY[call.spec.id]} failed")
    return NodeResult(outputs={"text": "ok", "attempts": FLAKY[call.spec.id]})


async def pieces_node(call: NodeCall) -> NodeResult:
    """Streams its pieces, a pause before each (an LLM's `text`)."""
    text = []
    for piece in call.spec.data["pieces"]:
        await asyncio.sleep(float(call.spec.data.get("pause", 0.001)))
        call.chunk("text", piece)
        text.append(piece)
    return NodeResult(outputs={"text": "".join(text)})


NODES = {
    "start": basic.start,
    "end": basic.end,
    "answer": basic.answer,
    "if-else": branch.if_else,
    "variable-aggregator": basic.variable_aggregator,
    "template-transform": basic.template_transform,
    "iteration": containers.iteration,
    "iteration-start": basic.passthrough,
    "loop": containers.loop,
    "loop-start": basic.passthrough,
    "loop-end": containers.loop_end,
    "assigner": basic.assigner,
    "sleep": sleep_node,
    "flaky": flaky_node,
    "pieces": pieces_node,
    "llm": pieces_node,
}


def node(node_id: str, kind: str, parent: str | None = None, **data: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"id": node_id, "data": {"type": kind, "title": node_id, **data}}
    if parent:
        raw["parentId"] = parent
    return raw


def edge(source: str, target: str, handle: str = "source") -> dict[str, Any]:
    return {
        "id": f"{source}>{target}>{handle}",
        "source": source,
        "target": target,
        "sourceHandle": handle,
    }


class Run:
    def __init__(
        self, nodes: list[dict[str, Any]], edges: list[dict[str, Any]], **options: Any
    ) -> None:
        self.graph = WorkflowGraph.parse({"nodes": nodes, "edges": edges}, node_types=TEST_TYPES)
        self.events: list[WorkflowEvent] = []
        self.pool = VariablePool(
            system={"query": options.pop("query", "")},
            conversation=options.pop("conversation", None),
        )
        chatflow = options.pop("chatflow", None)
        self.context = RunContext(
            graph=self.graph,
            nodes=NODES,
            emit=self.events.append,
            inputs=options.pop("inputs", {}),
            limits=options.pop("limits", RunLimits()),
        )
        if chatflow is not None:
            self.context.stream = AnswerStreamer(
                self.graph.top, self.pool, self.events.append, chatflow=chatflow
            )

    async def run(self) -> None:
        await run_scope(self.context, self.graph.top, self.pool)

    def go(self) -> Run:
        asyncio.run(self.run())
        return self

    def finished(self, node_id: str | None = None) -> list[Any]:
        return [
            e.execution
            for e in self.events
            if isinstance(e, NodeFinished) and (node_id is None or e.execution.node_id == node_id)
        ]

    def text(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, TextChunk))

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def test_a_chain_reports_each_node_in_order_with_its_outputs() -> None:
    run = Run(
        [
            node("s", "start", variables=[{"variable": "q", "type": "text-input"}]),
            node(
                "t",
                "template-transform",
                template="Hello {{ q }}!",
                variables=[{"variable": "q", "value_selector": ["s", "q"]}],
            ),
            node("e", "end", outputs=[{"variable": "out", "value_selector": ["t", "output"]}]),
        ],
        [edge("s", "t"), edge("t", "e")],
        inputs={"q": "world"},
    ).go()
    names = [(type(e).__name__, e.execution.node_id) for e in run.events]  # type: ignore[union-attr]
    assert names == [
        ("NodeStarted", "s"),
        ("NodeFinished", "s"),
        ("NodeStarted", "t"),
        ("NodeFinished", "t"),
        ("NodeStarted", "e"),
        ("NodeFinished", "e"),
    ]
    assert [e.index for e in run.finished()] == [1, 2, 3]
    assert run.finished("t")[0].predecessor_node_id == "s"
    assert run.finished("e")[0].outputs == {"out": "Hello world!"}


def test_parallel_branches_overlap_in_time_and_the_join_runs_after_all() -> None:
    run = Run(
        [
            node("s", "start"),
            *[node(f"b{i}", "sleep", seconds=0.2) for i in range(3)],
            node("e", "end", outputs=[]),
        ],
        [*[edge("s", f"b{i}") for i in range(3)], *[edge(f"b{i}", "e") for i in range(3)]],
    ).go()
    branches = [run.finished(f"b{i}")[0] for i in range(3)]
    last_start = max(b.created_at for b in branches)
    first_finish = min(b.finished_at for b in branches)
    assert last_start < first_finish  # every branch started before any ended
    assert run.finished("e")[0].created_at >= max(b.finished_at for b in branches)


def test_an_if_else_runs_one_branch_and_the_aggregator_takes_its_value() -> None:
    def graph(query: str) -> Run:
        return Run(
            [
                node("s", "start"),
                node(
                    "if",
                    "if-else",
                    cases=[
                        {
                            "case_id": "true",
                            "logical_operator": "and",
                            "conditions": [
                                {
                                    "variable_selector": ["sys", "query"],
                                    "comparison_operator": "contains",
                                    "value": "yes",
                                }
                            ],
                        }
                    ],
                ),
                node("a", "sleep", text="took yes"),
                node("b", "sleep", text="took no"),
                node("agg", "variable-aggregator", variables=[["a", "text"], ["b", "text"]]),
                node(
                    "e", "end", outputs=[{"variable": "out", "value_selector": ["agg", "output"]}]
                ),
            ],
            [
                edge("s", "if"),
                edge("if", "a", "true"),
                edge("if", "b", "false"),
                edge("a", "agg"),
                edge("b", "agg"),
                edge("agg", "e"),
            ],
            query=query,
        ).go()

    yes, no = graph("yes please"), graph("never")
    assert yes.finished("e")[0].outputs == {"out": "took yes"} and not yes.finished("b")
    assert no.finished("e")[0].outputs == {"out": "took no"} and not no.finished("a")


def test_a_retried_node_reports_each_failed_attempt_and_then_succeeds() -> None:
    FLAKY.clear()
    run = Run(
        [
            node("s", "start"),
            node(
                "f",
                "flaky",
                failures=2,
                retry_config={"enabled": True, "max_retries": 3, "retry_interval": 10},
            ),
            node("e", "end", outputs=[]),
        ],
        [edge("s", "f"), edge("f", "e")],
    ).go()
    retries = run.of(NodeRetried)
    assert [r.retry_index for r in retries] == [1, 2]
    assert all(r.execution.status == "retry" and "failed" in r.execution.error for r in retries)
    (finished,) = run.finished("f")
    assert finished.status == "succeeded" and finished.outputs["attempts"] == 3


def test_a_retry_waits_in_its_own_node_without_holding_up_the_others() -> None:
    FLAKY.clear()
    run = Run(
        [
            node("s", "start"),
            node(
                "f",
                "flaky",
                failures=1,
                retry_config={"enabled": True, "max_retries": 1, "retry_interval": 300},
            ),
            node("q", "sleep", seconds=0.01),
            node("q2", "sleep", seconds=0.01),
        ],
        [edge("s", "f"), edge("s", "q"), edge("q", "q2")],
    ).go()
    assert run.finished("q2")[0].finished_at < run.finished("f")[0].finished_at


def test_fail_branch_takes_the_error_path_with_the_error_in_its_outputs() -> None:
    run = Run(
        [
            node("s", "start"),
            node("x", "sleep", fail="boom", error_strategy="fail-branch"),
            node("ok", "sleep"),
            node(
                "bad",
                "template-transform",
                template="{{ e }}",
                variables=[{"variable": "e", "value_selector": ["x", "error_message"]}],
            ),
        ],
        [edge("s", "x"), edge("x", "ok", "success-branch"), edge("x", "bad", "fail-branch")],
    ).go()
    assert run.finished("x")[0].status == "exception"
    assert not run.finished("ok")
    assert run.finished("bad")[0].outputs == {"output": "boom"}
    assert run.context.exceptions == 1


def test_default_value_goes_on_with_the_node_defaults() -> None:
    run = Run(
        [
            node("s", "start"),
            node(
                "x",
                "sleep",
                fail="boom",
                error_strategy="default-value",
                default_value=[{"key": "text", "type": "string", "value": "fallback"}],
            ),
            node("e", "end", outputs=[{"variable": "out", "value_selector": ["x", "text"]}]),
        ],
        [edge("s", "x"), edge("x", "e")],
    ).go()
    assert run.finished("e")[0].outputs == {"out": "fallback"}
    assert run.finished("x")[0].outputs["error_message"] == "boom"


def test_a_failure_without_a_strategy_aborts_the_run_and_cancels_the_other_branches() -> None:
    run = Run(
        [
            node("s", "start"),
            node("x", "sleep", seconds=0.05, fail="broken"),
            node("slow", "sleep", seconds=30),
        ],
        [edge("s", "x"), edge("s", "slow")],
    )
    started = time.perf_counter()
    with pytest.raises(NodeAborted) as aborted:
        asyncio.run(run.run())
    assert time.perf_counter() - started < 5
    assert aborted.value.execution.node_id == "x"
    assert "broken" in aborted.value.message
    assert run.finished("slow")[0].status == "stopped"


def test_a_stop_cancels_every_running_node_at_once() -> None:
    run = Run(
        [node("s", "start"), *[node(f"b{i}", "sleep", seconds=30) for i in range(10)]],
        [edge("s", f"b{i}") for i in range(10)],
    )

    async def stop_soon() -> float:
        all_started = asyncio.Event()

        def emit(event: WorkflowEvent) -> None:
            run.events.append(event)
            if len(run.of(NodeStarted)) == 11:
                all_started.set()

        run.context.emit = emit
        task = asyncio.create_task(run.run())
        await all_started.wait()
        asked = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.perf_counter() - asked

    took = asyncio.run(stop_soon())
    assert took < 1.0
    assert sorted(e.node_id for e in run.finished() if e.status == "stopped") == [
        f"b{i}" for i in range(10)
    ]


def test_a_node_timeout_fails_the_node_in_words() -> None:
    run = Run(
        [
            node("s", "start"),
            node("x", "sleep", seconds=30, timeout_seconds=0.05, error_strategy="fail-branch"),
        ],
        [edge("s", "x")],
    ).go()
    (finished,) = run.finished("x")
    assert finished.status == "exception" and "timed out after 0.05 s" in finished.error


def test_the_step_limit_ends_a_run_that_goes_on_too_long() -> None:
    names = [f"n{i}" for i in range(20)]
    run = Run(
        [node("s", "start"), *[node(n, "sleep") for n in names]],
        [edge("s", names[0]), *[edge(a, b) for a, b in itertools.pairwise(names)]],
        limits=RunLimits(max_steps=5),
    )
    with pytest.raises(StepLimitExceeded):
        asyncio.run(run.run())


def iteration_graph(parallel: bool, mode: str = "terminated", fail_on: str | None = None) -> Run:
    return Run(
        [
            node("s", "start"),
            node(
                "it",
                "iteration",
                iterator_selector=["s", "items"],
                output_selector=["t", "output"],
                is_parallel=parallel,
                parallel_nums=5,
                error_handle_mode=mode,
                start_node_id="it-start",
            ),
            node("it-start", "iteration-start", parent="it", isInIteration=True),
            node("w", "sleep", parent="it", seconds=0.1, isInIteration=True),
            node(
                "t",
                "template-transform",
                parent="it",
                template="{% if item == '"
                + (fail_on or "\u0000")
                + "' %}{{ undefined_function() }}{% endif %}<{{ item }}:{{ index }}>",
                variables=[
                    {"variable": "item", "value_selector": ["it", "item"]},
                    {"variable": "index", "value_selector": ["it", "index"]},
                ],
            ),
            node("e", "end", outputs=[{"variable": "out", "value_selector": ["it", "output"]}]),
        ],
        [edge("s", "it"), edge("it-start", "w"), edge("w", "t"), edge("it", "e")],
        inputs={"items": ["a", "b", "c", "d", "e"]},
    )


def test_a_parallel_iteration_runs_its_items_at_once_and_keeps_their_order() -> None:
    run = iteration_graph(parallel=True).go()
    assert run.finished("e")[0].outputs == {"out": ["<a:0>", "<b:1>", "<c:2>", "<d:3>", "<e:4>"]}
    waits = run.finished("w")
    assert len(waits) == 5 and max(w.created_at for w in waits) < min(w.finished_at for w in waits)
    assert {w.iteration_id for w in waits} == {"it"}
    assert sorted(w.iteration_index for w in waits) == [0, 1, 2, 3, 4]
    phases = [e.phase for e in run.of(ContainerEvent)]
    assert phases[0] == "started" and phases[-1] == "completed" and phases.count("next") == 5


def test_a_sequential_iteration_runs_one_item_after_another() -> None:
    run = iteration_graph(parallel=False).go()
    waits = sorted(run.finished("w"), key=lambda w: w.created_at)
    assert all(a.finished_at <= b.created_at for a, b in itertools.pairwise(waits))


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("continue-on-error", ["<a:0>", None, "<c:2>", "<d:3>", "<e:4>"]),
        ("remove-abnormal-output", ["<a:0>", "<c:2>", "<d:3>", "<e:4>"]),
    ],
)
def test_an_iteration_item_that_fails_is_kept_as_none_or_left_out(
    mode: str, expected: list[Any]
) -> None:
    run = iteration_graph(parallel=True, mode=mode, fail_on="b").go()
    assert run.finished("e")[0].outputs == {"out": expected}


def test_a_terminated_iteration_fails_when_an_item_fails() -> None:
    run = iteration_graph(parallel=True, mode="terminated", fail_on="b")
    with pytest.raises(NodeAborted) as aborted:
        asyncio.run(run.run())
    assert aborted.value.execution.node_id == "it"
    completed = [e for e in run.of(ContainerEvent) if e.phase == "completed"]
    assert completed[0].execution.status == "failed"


def test_a_loop_runs_until_its_break_condition_with_its_loop_variables() -> None:
    run = Run(
        [
            node("s", "start"),
            node(
                "lp",
                "loop",
                loop_count=10,
                start_node_id="lp-start",
                loop_variables=[
                    {"label": "n", "var_type": "number", "value_type": "constant", "value": "0"}
                ],
                break_conditions=[
                    {
                        "variable_selector": ["lp", "n"],
                        "comparison_operator": "≥",
                        "value": "3",
                        "varType": "number",
                    }
                ],
                logical_operator="and",
            ),
            node("lp-start", "loop-start", parent="lp", isInLoop=True),
            node(
                "inc",
                "assigner",
                parent="lp",
                isInLoop=True,
                version="2",
                items=[
                    {
                        "variable_selector": ["lp", "n"],
                        "operation": "+=",
                        "input_type": "constant",
                        "value": 1,
                    }
                ],
            ),
            node("e", "end", outputs=[{"variable": "n", "value_selector": ["lp", "n"]}]),
        ],
        [edge("s", "lp"), edge("lp-start", "inc"), edge("lp", "e")],
    ).go()
    assert run.finished("e")[0].outputs == {"n": 3}
    assert [e.phase for e in run.of(ContainerEvent)].count("next") == 3


def test_the_answer_streams_in_template_order_whatever_order_its_parts_are_made() -> None:
    run = Run(
        [
            node("s", "start"),
            node("slow", "llm", pieces=["1", "2", "3"], pause=0.05),
            node("fast", "llm", pieces=["x", "y"], pause=0.001),
            node("a", "answer", answer="A:{{#slow.text#}} B:{{#fast.text#}}."),
        ],
        [edge("s", "slow"), edge("s", "fast"), edge("slow", "a"), edge("fast", "a")],
        chatflow=True,
    ).go()
    assert run.text() == "A:123 B:xy."
    assert run.finished("a")[0].outputs["answer"] == "A:123 B:xy."
    chunks = run.of(TextChunk)
    first_slow = next(i for i, c in enumerate(chunks) if c.text == "1")
    answer_started = next(
        i
        for i, e in enumerate(run.events)
        if isinstance(e, NodeStarted) and e.execution.node_id == "a"
    )
    # the slow model's first piece went out before the answer node itself started
    assert run.events.index(chunks[first_slow]) < answer_started


def test_the_answer_of_a_branch_not_taken_is_never_streamed() -> None:
    run = Run(
        [
            node("s", "start"),
            node(
                "if",
                "if-else",
                cases=[
                    {
                        "case_id": "true",
                        "logical_operator": "and",
                        "conditions": [
                            {
                                "variable_selector": ["sys", "query"],
                                "comparison_operator": "is",
                                "value": "a",
                            }
                        ],
                    }
                ],
            ),
            node("l1", "llm", pieces=["one"]),
            node("l2", "llm", pieces=["two"]),
            node("a1", "answer", answer="[{{#l1.text#}}]"),
            node("a2", "answer", answer="<{{#l2.text#}}>"),
        ],
        [
            edge("s", "if"),
            edge("if", "l1", "true"),
            edge("if", "l2", "false"),
            edge("l1", "a1"),
            edge("l2", "a2"),
        ],
        chatflow=True,
        query="b",
    ).go()
    assert run.text() == "<two>"


def test_a_workflow_streams_only_the_streaming_outputs_of_its_end() -> None:
    run = Run(
        [
            node("s", "start"),
            node("l", "llm", pieces=["he", "llo"]),
            node("t", "template-transform", template="const"),
            node(
                "e",
                "end",
                outputs=[
                    {"variable": "a", "value_selector": ["t", "output"]},
                    {"variable": "b", "value_selector": ["l", "text"]},
                ],
            ),
        ],
        [edge("s", "l"), edge("s", "t"), edge("l", "e"), edge("t", "e")],
        chatflow=False,
    ).go()
    chunks = run.of(TextChunk)
    assert [c.text for c in chunks] == ["he", "llo"]
    assert chunks[0].selector == ("l", "text")


def test_a_conversation_variable_assigned_in_a_run_is_kept_in_the_pool() -> None:
    conversation: dict[str, Any] = {"turns": []}
    Run(
        [
            node("s", "start"),
            node(
                "as",
                "assigner",
                version="2",
                items=[
                    {
                        "variable_selector": ["conversation", "turns"],
                        "operation": "append",
                        "input_type": "variable",
                        "value": ["sys", "query"],
                    }
                ],
            ),
        ],
        [edge("s", "as")],
        conversation=conversation,
        query="hi",
    ).go()
    assert conversation == {"turns": ["hi"]}


def test_a_resumed_run_takes_its_ended_nodes_as_they_were_and_runs_the_rest() -> None:
    from conduit.core.workflow.engine import Restored

    run = Run(
        [
            node("s", "start"),
            node("a", "flaky", failures=99),  # would fail if it ran again
            node(
                "if",
                "if-else",
                cases=[
                    {
                        "case_id": "true",
                        "logical_operator": "and",
                        "conditions": [
                            {
                                "variable_selector": ["a", "text"],
                                "comparison_operator": "is",
                                "value": "done before",
                            }
                        ],
                    }
                ],
            ),
            node(
                "yes",
                "template-transform",
                template="{{ x }}!",
                variables=[{"variable": "x", "value_selector": ["a", "text"]}],
            ),
            node("no", "sleep"),
        ],
        [edge("s", "a"), edge("a", "if"), edge("if", "yes", "true"), edge("if", "no", "false")],
    )
    restored = {
        "s": Restored(outputs={}, handles={"source"}),
        "a": Restored(outputs={"text": "done before"}, handles={"source"}),
    }
    asyncio.run(run_scope(run.context, run.graph.top, run.pool, restored=restored))
    assert [e.execution.node_id for e in run.of(NodeStarted)] == ["if", "yes"]
    assert run.finished("yes")[0].outputs == {"output": "done before!"}
    assert run.finished("if")[0].predecessor_node_id == "a"
    assert run.context.steps == 4  # the restored nodes count as steps of the run
