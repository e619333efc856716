"""Iteration and loop nodes at the run's limits (the engine's test graphs, tests/unit/workflow/
test_engine.py): the step limit reached inside a container fails the container with the
limit's error and ends the run with it, whether the items run one by one or at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conduit.core.workflow.engine import RunLimits, StepLimitExceeded
from conduit.core.workflow.events import ContainerEvent
from tests.unit.workflow.test_engine import Run, edge, iteration_graph, node

pytestmark = pytest.mark.timeout(60)


def completed(run: Run) -> list[Any]:
    return [e.execution for e in run.of(ContainerEvent) if e.phase == "completed"]


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "sequential"])
def test_the_step_limit_inside_an_iteration_fails_it_with_the_limit_s_error(
    parallel: bool,
) -> None:
    run = iteration_graph(parallel=parallel)
    run.context.limits = RunLimits(max_steps=6)
    with pytest.raises(StepLimitExceeded):
        asyncio.run(run.run())
    (iteration,) = completed(run)
    assert (iteration.status, iteration.error) == ("failed", "The workflow ran more than 6 steps.")


def test_the_step_limit_inside_a_loop_fails_it_with_the_limit_s_error() -> None:
    run = Run(
        [
            node("s", "start"),
            node(
                "lp",
                "loop",
                loop_count=100,
                start_node_id="lp-start",
                loop_variables=[{"label": "i", "var_type": "number", "value": 0}],
            ),
            node("lp-start", "loop-start", parent="lp", isInLoop=True),
            node(
                "add",
                "assigner",
                parent="lp",
                isInLoop=True,
                items=[
                    {
                        "variable_selector": ["lp", "i"],
                        "input_type": "constant",
                        "operation": "+=",
                        "value": 1,
                    }
                ],
            ),
        ],
        [edge("s", "lp"), edge("lp-start", "add")],
        limits=RunLimits(max_steps=9),
    )
    with pytest.raises(StepLimitExceeded):
        asyncio.run(run.run())
    (loop,) = completed(run)
    assert (loop.status, loop.error) == ("failed", "The workflow ran more than 9 steps.")
