"""Iteration and loop: run their children's scope once per item or round.

An item or a round runs in a `Scope` of the pool (its own layer, reading through to the run's),
never a copy of the whole pool. A parallel iteration runs up to `parallel_nums` items at once,
each its own set of node tasks; `error_handle_mode` decides what a failed item does:
`terminated` fails the iteration (and cancels the items still running), `continue-on-error`
gives that item `None`, `remove-abnormal-output` leaves it out.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from conduit.core.workflow.conditions import Condition, ConditionError, check
from conduit.core.workflow.engine import (
    NodeAborted,
    NodeCall,
    NodeFailed,
    NodeResult,
    StepLimitExceeded,
)
from conduit.core.workflow.events import ContainerEvent, NodeExecution
from conduit.core.workflow.variables import VariableNotFound, VariablePool, selector_of

MAX_PARALLEL = 10  # Dify's cap on parallel_nums
MAX_LOOP_COUNT = 1000

ErrorMode = Literal["terminated", "continue-on-error", "remove-abnormal-output"]


async def iteration(call: NodeCall) -> NodeResult:
    data, spec = call.spec.data, call.spec
    try:
        items = call.pool.get(selector_of(data.get("iterator_selector"), field="iterator_selector"))
    except (VariableNotFound, ValueError) as error:
        raise NodeFailed(f"The iteration's input is not set: {error}") from error
    if items is None:
        items = []
    if not isinstance(items, list):
        raise NodeFailed(f"The iteration's input must be an array, not {type(items).__name__}.")
    output_selector = selector_of(data.get("output_selector"), field="output_selector")
    mode: ErrorMode = data.get("error_handle_mode") or "terminated"
    parallel = bool(data.get("is_parallel"))
    width = max(1, min(int(data.get("parallel_nums") or MAX_PARALLEL), MAX_PARALLEL))
    inputs = {"iterator_selector": items}
    execution = call.execution
    execution.inputs = inputs
    started = time.perf_counter()
    call.emit(ContainerEvent("iteration", "started", execution))
    results: list[Any] = [None] * len(items)
    failed: set[int] = set()

    async def one(index: int, item: Any) -> None:
        scope = call.pool.scope()
        scope.set_outputs(spec.id, {"item": item, "index": index})
        call.emit(ContainerEvent("iteration", "next", execution, index=index))
        try:
            await call.run_scope(scope, iteration_index=index)
        except NodeAborted as aborted:
            if mode == "terminated":
                raise NodeFailed(aborted.message) from aborted
            failed.add(index)
            return
        results[index] = scope.find(output_selector)

    try:
        if parallel and len(items) > 1:
            slots = asyncio.Semaphore(width)

            async def bounded(index: int, item: Any) -> None:
                async with slots:
                    await one(index, item)

            async with asyncio.TaskGroup() as group:
                for index, item in enumerate(items):
                    group.create_task(bounded(index, item))
        else:
            for index, item in enumerate(items):
                await one(index, item)
    except BaseException as error:
        failure = _first_failure(error)
        _complete(call, "iteration", execution, started, len(items), failure)
        if failure is not None:
            raise failure from None
        raise
    if mode == "remove-abnormal-output":
        output = [value for index, value in enumerate(results) if index not in failed]
    else:
        output = results
    if data.get("flatten_output", True) and output and all(isinstance(v, list) for v in output):
        output = [value for part in output for value in part]
    outputs = {"output": output}
    execution.outputs = outputs
    _complete(call, "iteration", execution, started, len(items), None)
    return NodeResult(outputs=outputs, inputs=inputs)


async def loop(call: NodeCall) -> NodeResult:
    data, spec = call.spec.data, call.spec
    count = int(data.get("loop_count") or 0)
    if not 0 < count <= MAX_LOOP_COUNT:
        raise NodeFailed(f"loop_count must be between 1 and {MAX_LOOP_COUNT}, not {count}.")
    variables: dict[str, Any] = {}
    for item in data.get("loop_variables") or ():
        label = str(item.get("label"))
        value = item.get("value")
        if item.get("value_type") == "variable" and value:
            value = call.pool.find(selector_of(value, field=f"loop_variables.{label}"))
        variables[label] = _typed(value, str(item.get("var_type") or ""))
    try:
        conditions = [Condition.from_dsl(c) for c in data.get("break_conditions") or ()]
    except (ConditionError, ValueError) as error:
        raise NodeFailed(f"break_conditions: {error}") from error
    operator = str(data.get("logical_operator") or "and")
    ends = [n.id for n in call.run.graph.scope(spec.id).nodes.values() if n.type == "loop-end"]
    execution = call.execution
    execution.inputs = dict(variables)
    started = time.perf_counter()
    call.emit(ContainerEvent("loop", "started", execution))
    rounds = 0
    try:
        call.pool.set_outputs(spec.id, variables)
        for index in range(count):
            if conditions and _met(call.pool, conditions, operator):
                break
            scope = call.pool.scope()
            call.emit(
                ContainerEvent("loop", "next", execution, index=index, previous_output=variables)
            )
            rounds += 1
            try:
                await call.run_scope(scope, loop_index=index)
            except NodeAborted as aborted:
                raise NodeFailed(aborted.message) from aborted
            variables = call.pool.outputs(spec.id) or variables
            if any(scope.outputs(end) is not None for end in ends):
                break
    except BaseException as error:
        _complete(call, "loop", execution, started, rounds, _first_failure(error))
        raise
    outputs = dict(variables)
    execution.outputs = outputs
    _complete(call, "loop", execution, started, rounds, None)
    return NodeResult(outputs=outputs, inputs=execution.inputs, metadata={"loop_rounds": rounds})


async def loop_end(call: NodeCall) -> NodeResult:
    return NodeResult(outputs={"ended": True})


def _met(pool: VariablePool, conditions: list[Condition], operator: str) -> bool:
    try:
        return check(conditions, operator, pool.get, pool.render)
    except ConditionError as error:
        raise NodeFailed(f"break_conditions: {error.message}") from error


def _typed(value: Any, var_type: str) -> Any:
    if var_type == "number" and isinstance(value, str) and value.strip():
        try:
            return int(value) if value.strip().lstrip("-").isdigit() else float(value)
        except ValueError:
            return value
    return value


def _first_failure(error: BaseException) -> NodeFailed | StepLimitExceeded | None:
    """What failed the container (out of a parallel iteration's exception group too); None
    when it was cancelled."""
    if isinstance(error, NodeFailed | StepLimitExceeded):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _first_failure(inner)
            if found is not None:
                return found
    return None


def _complete(
    call: NodeCall,
    kind: Literal["iteration", "loop"],
    execution: NodeExecution,
    started: float,
    steps: int,
    failure: NodeFailed | StepLimitExceeded | None,
) -> None:
    execution.elapsed_time = round(time.perf_counter() - started, 6)
    execution.finished_at = time.time()
    if failure is not None:
        execution.status, execution.error = "failed", failure.message
    elif execution.outputs is None:
        execution.status, execution.error = "stopped", "The run was stopped."
    else:
        execution.status = "succeeded"
    call.emit(ContainerEvent(kind, "completed", execution, steps=steps))
