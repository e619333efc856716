"""The planner on its own: what is ready, what is skipped, when a join runs."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from conduit.core.workflow.graph import WorkflowGraph, WorkflowGraphError
from conduit.core.workflow.planner import NodeState, Planner


def dsl(nodes: list[tuple[str, str]], edges: list[tuple[str, str, str]], **data: Any) -> Any:
    return {
        "nodes": [
            {"id": node_id, "data": {"type": kind, "title": node_id, **data.get(node_id, {})}}
            for node_id, kind in nodes
        ],
        "edges": [
            {"id": f"{s}-{t}-{h}", "source": s, "target": t, "sourceHandle": h} for s, t, h in edges
        ],
    }


def planner(
    nodes: list[tuple[str, str]], edges: list[tuple[str, str, str]], **data: Any
) -> Planner:
    return Planner(WorkflowGraph.parse(dsl(nodes, edges, **data)).top)


def test_a_chain_runs_one_node_after_another() -> None:
    plan = planner(
        [("s", "start"), ("a", "code"), ("e", "end")],
        [("s", "a", "source"), ("a", "e", "source")],
    )
    assert plan.start() == ["s"]
    assert plan.finish("s", {"source"}).ready == ["a"]
    assert plan.finish("a", {"source"}).ready == ["e"]
    assert plan.finish("e", {"source"}).ready == []


def test_a_fan_out_makes_every_branch_ready_at_once_and_the_join_waits_for_all() -> None:
    plan = planner(
        [("s", "start"), ("a", "llm"), ("b", "llm"), ("c", "llm"), ("j", "end")],
        [
            ("s", "a", "source"),
            ("s", "b", "source"),
            ("s", "c", "source"),
            ("a", "j", "source"),
            ("b", "j", "source"),
            ("c", "j", "source"),
        ],
    )
    plan.start()
    assert sorted(plan.finish("s", {"source"}).ready) == ["a", "b", "c"]
    assert plan.finish("a", {"source"}).ready == []
    assert plan.finish("c", {"source"}).ready == []
    assert plan.finish("b", {"source"}).ready == ["j"]


def test_a_branch_skips_the_path_it_did_not_take_down_to_the_join() -> None:
    plan = planner(
        [
            ("s", "start"),
            ("if", "if-else"),
            ("t1", "code"),
            ("t2", "code"),
            ("f1", "code"),
            ("join", "variable-aggregator"),
            ("e", "end"),
        ],
        [
            ("s", "if", "source"),
            ("if", "t1", "true"),
            ("t1", "t2", "source"),
            ("if", "f1", "false"),
            ("t2", "join", "source"),
            ("f1", "join", "source"),
            ("join", "e", "source"),
        ],
    )
    plan.start()
    plan.finish("s", {"source"})
    step = plan.finish("if", {"false"})
    assert step.ready == ["f1"]
    assert sorted(step.skipped) == ["t1", "t2"]
    assert plan.state("join") is NodeState.WAITING  # f1 has not ended yet
    assert plan.finish("f1", {"source"}).ready == ["join"]


def test_a_node_all_of_whose_inputs_were_skipped_is_skipped_and_so_is_what_follows() -> None:
    plan = planner(
        [("s", "start"), ("if", "if-else"), ("a", "code"), ("b", "code"), ("c", "end")],
        [("s", "if", "source"), ("if", "a", "true"), ("a", "b", "source"), ("b", "c", "source")],
    )
    plan.start()
    plan.finish("s", {"source"})
    step = plan.finish("if", {"false"})
    assert step.ready == []
    assert sorted(step.skipped) == ["a", "b", "c"]


def test_a_node_is_certain_once_every_branch_above_it_decided() -> None:
    plan = planner(
        [("s", "start"), ("l", "llm"), ("if", "if-else"), ("a", "answer"), ("b", "answer")],
        [("s", "l", "source"), ("s", "if", "source"), ("if", "a", "true"), ("if", "b", "false")],
    )
    plan.start()
    assert plan.certain("l") and not plan.certain("a")
    plan.finish("s", {"source"})
    plan.finish("if", {"true"})
    assert plan.certain("a") and not plan.certain("b")


def test_a_fail_branch_node_decides_between_its_two_paths() -> None:
    plan = planner(
        [("s", "start"), ("h", "http-request"), ("ok", "code"), ("bad", "code")],
        [("s", "h", "source"), ("h", "ok", "source"), ("h", "bad", "fail-branch")],
        h={"error_strategy": "fail-branch"},
    )
    plan.start()
    plan.finish("s", {"source"})
    assert not plan.certain("ok")
    step = plan.finish("h", {"fail-branch"})
    assert step.ready == ["bad"] and step.skipped == ["ok"]


def test_a_long_skipped_chain_does_not_recurse() -> None:
    names = [f"n{i}" for i in range(3000)]
    nodes = [("s", "start"), ("if", "if-else"), *[(n, "code") for n in names]]
    edges = [("s", "if", "source"), ("if", names[0], "true")]
    edges += [(a, b, "source") for a, b in itertools.pairwise(names)]
    plan = planner(nodes, edges)
    plan.start()
    plan.finish("s", {"source"})
    assert len(plan.finish("if", {"false"}).skipped) == 3000


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        (dsl([("s", "start"), ("t", "datasource")], []), "node 't' (t) has type 'datasource'"),
        (dsl([("s", "start"), ("t", "agent")], []), "node 't' (t).agent_parameters.model: must"),
        (dsl([("s", "start"), ("t", "tool")], []), "node 't' (t).provider_id: no built-in tool"),
        (dsl([("a", "code")], []), "exactly one start node"),
        (dsl([("s", "start")], [("s", "x", "source")]), "joins node 'x'"),
        ({"nodes": "no"}, "must be lists"),
    ],
)
def test_a_graph_that_cannot_run_is_refused_naming_what_is_wrong(graph: Any, message: str) -> None:
    with pytest.raises(WorkflowGraphError) as error:
        WorkflowGraph.parse(graph)
    assert message in error.value.message
