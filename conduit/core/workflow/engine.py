"""The graph engine: runs one scope of a workflow graph on asyncio, each node as its own task.

Where Dify's engine is slow (`dify-pain-points.md` §A1), this one is not by construction:
- no dispatcher polling a queue every 100 ms: the engine awaits its running node tasks and,
  the moment one ends, asks the planner what became ready and starts every such node at once;
- a node's retries wait (`asyncio.sleep`) in that node's own task, never holding up others;
- a stop, a time limit or an aborting failure cancels every running node *now*: model streams
  and HTTP calls are closed by the cancellation, code subprocesses killed by their node;
- no worker pool to grow: concurrency is bounded only by `RunLimits.concurrency` (generous);
- an iteration item runs in a `Scope` over the pool, not a deep copy of it.

`run_scope()` runs a graph scope to its end. It returns normally when every reachable node
ended; it raises `NodeAborted` when a node failed with no error strategy (after cancelling the
rest), `StepLimitExceeded` when the run took too many steps, and `CancelledError` when it was
cancelled (each in-flight node then reports `stopped`).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from conduit.core.workflow.events import (
    NodeExecution,
    NodeFinished,
    NodeRetried,
    NodeStarted,
    Sink,
    WorkflowEvent,
)
from conduit.core.workflow.graph import (
    CONTAINERS,
    DEFAULT_HANDLE,
    FAIL_BRANCH,
    SUCCESS_BRANCH,
    Graph,
    NodeSpec,
    WorkflowGraph,
)
from conduit.core.workflow.human_input import NodePaused, RunPaused
from conduit.core.workflow.planner import Planner, Step
from conduit.core.workflow.variables import VariablePool


class NodeFailed(Exception):
    """A node could not do its work; `message` says why in words a workflow's author reads."""

    def __init__(self, message: str, *, error_type: str = "NodeFailed") -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type


class NodeAborted(Exception):
    """A node failed and had no error strategy: the run fails with its error."""

    def __init__(self, execution: NodeExecution) -> None:
        super().__init__(execution.error)
        self.execution = execution
        self.message = f"Node {execution.title} run failed: {execution.error}"


class StepLimitExceeded(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"The workflow ran more than {limit} steps.")
        self.message = str(self)


@dataclass(frozen=True)
class NodeResult:
    """What a node produced: its outputs, the handles it leaves through (a branch's choice),
    what it was given and what it did on the way (for the run's records), its token use."""

    outputs: Mapping[str, Any]
    inputs: Mapping[str, Any] | None = None
    process_data: Mapping[str, Any] | None = None
    handles: Collection[str] = (DEFAULT_HANDLE,)
    metadata: Mapping[str, Any] | None = None  # total_tokens, total_price, currency, ...


@dataclass(frozen=True)
class RunLimits:
    max_steps: int = 500
    concurrency: int = 64  # nodes running at once (containers do not hold a slot)


@dataclass
class NodeCall:
    """A node's view of the run as it executes."""

    spec: NodeSpec
    pool: VariablePool
    run: RunContext
    execution: NodeExecution
    streaming: bool  # whether its text pieces go to the answer stream (top level only)

    def chunk(self, variable: str, text: str) -> None:
        """A piece of a text output as it is produced (an LLM's answer)."""
        if self.streaming and self.run.stream is not None and text:
            self.run.stream.chunk(self.spec.id, variable, text)

    def emit(self, event: WorkflowEvent) -> None:
        self.run.emit(event)

    async def run_scope(
        self,
        pool: VariablePool,
        *,
        iteration_index: int | None = None,
        loop_index: int | None = None,
    ) -> None:
        """Run this container's children once (an iteration item or a loop round) in `pool`."""
        await run_scope(
            self.run,
            self.run.graph.scope(self.spec.id),
            pool,
            iteration_id=self.spec.id if self.spec.type == "iteration" else None,
            loop_id=self.spec.id if self.spec.type == "loop" else None,
            iteration_index=iteration_index,
            loop_index=loop_index,
        )


NodeFunction = Callable[[NodeCall], Awaitable[NodeResult]]


class AnswerStream(Protocol):
    """What the engine tells the answer stream (`core/workflow/streaming.py`)."""

    def chunk(self, node_id: str, variable: str, text: str) -> None: ...

    def progress(self, planner: Planner, step: Step, finished: str | None) -> None: ...


@dataclass
class RunContext:
    """What every scope of one run shares."""

    graph: WorkflowGraph
    nodes: Mapping[str, NodeFunction]  # by node type
    emit: Sink
    inputs: Mapping[str, Any] = field(default_factory=dict)  # the start node's form, checked
    services: Any = None  # what nodes need from outside (models, datasets, settings)
    limits: RunLimits = field(default_factory=RunLimits)
    stream: AnswerStream | None = None
    steps: int = 0
    exceptions: int = 0  # nodes that failed into an error strategy
    total_tokens: int = 0
    _index: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _slots: asyncio.Semaphore | None = None

    def next_index(self) -> int:
        return next(self._index)

    @property
    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limits.concurrency)
        return self._slots


@dataclass(frozen=True)
class Restored:
    """A node that ended in an earlier execution of the run (a resumed run): its outputs and
    the edges it left through."""

    outputs: Mapping[str, Any]
    handles: Collection[str]


async def run_scope(
    run: RunContext,
    graph: Graph,
    pool: VariablePool,
    *,
    iteration_id: str | None = None,
    loop_id: str | None = None,
    iteration_index: int | None = None,
    loop_index: int | None = None,
    restored: Mapping[str, Restored] | None = None,
) -> None:
    """Run `graph` from its root until no node is running or ready. `restored`: nodes that
    ended in an earlier execution of the run (it resumes): they are not run again, their
    outputs and edges are taken as they were. A node that waits on a person (`NodePaused`)
    holds up only what follows it: the rest runs on, and once nothing else can, the scope
    raises `RunPaused` with every waiting node's form."""
    planner = Planner(graph)
    top = iteration_id is None and loop_id is None
    running: dict[asyncio.Task[Collection[str]], str] = {}
    paused: list[NodePaused] = []

    def launch(node_id: str, predecessor: str | None) -> None:
        spec = graph.nodes[node_id]
        execution = NodeExecution(
            id=str(uuid.uuid4()),
            node_id=node_id,
            node_type=spec.type,
            title=spec.title,
            index=run.next_index(),
            predecessor_node_id=predecessor,
            iteration_id=iteration_id,
            loop_id=loop_id,
            iteration_index=iteration_index,
            loop_index=loop_index,
        )
        call = NodeCall(spec=spec, pool=pool, run=run, execution=execution, streaming=top)
        task = asyncio.create_task(_execute(call), name=f"workflow-node-{node_id}")
        running[task] = node_id

    def advance(node_id: str, handles: Collection[str]) -> None:
        """`node_id` ended: start what became ready (a restored node ends here at once)."""
        work = [(node_id, handles)]
        while work:
            ended, left = work.pop()
            step = planner.finish(ended, left)
            if top and run.stream is not None:
                run.stream.progress(planner, step, ended)
            for ready in step.ready:
                if restored is not None and ready in restored:
                    work.append((ready, restore(ready)))
                else:
                    launch(ready, ended)

    def restore(node_id: str) -> Collection[str]:
        assert restored is not None
        earlier = restored[node_id]
        run.steps += 1
        pool.set_outputs(node_id, earlier.outputs)
        return earlier.handles

    try:
        for node_id in planner.start():
            if restored is not None and node_id in restored:
                advance(node_id, restore(node_id))
            else:
                launch(node_id, None)
        if top and run.stream is not None:
            run.stream.progress(planner, Step(), None)
        while running:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                node_id = running.pop(task)
                try:
                    handles = task.result()  # raises NodeAborted: the except below ends the rest
                except NodePaused as waiting:
                    paused.append(waiting)
                    continue
                advance(node_id, handles)
        if paused:
            raise RunPaused(paused)
    except BaseException:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        raise


async def _execute(call: NodeCall) -> Collection[str]:
    """Run one node with its retries, timeout and error strategy; report it; return the
    handles it leaves through. Raises NodeAborted when it failed with no strategy."""
    run, spec, execution = call.run, call.spec, call.execution
    run.steps += 1
    if run.steps > run.limits.max_steps:
        raise StepLimitExceeded(run.limits.max_steps)
    function = run.nodes[spec.type]
    container = spec.type in CONTAINERS
    started = time.perf_counter()
    if not container:
        run.emit(NodeStarted(execution))
    attempt = 0
    try:
        while True:
            try:
                if container:
                    result = await _attempt(function, call)
                else:
                    async with run.slots:
                        result = await _attempt(function, call)
                break
            except NodeFailed as failure:
                error, error_type = failure.message, failure.error_type
            except NodePaused as waiting:
                # It waits on a person: no `node_finished` (the run's `workflow_paused` names
                # it); its execution is kept, `paused`, with the run's records.
                execution.status = "paused"
                execution.elapsed_time = round(time.perf_counter() - started, 6)
                waiting.execution = execution
                raise
            except (StepLimitExceeded, NodeAborted):
                raise
            except Exception as failure:  # a node's bug is that node's failure, not the run's
                error, error_type = f"{type(failure).__name__}: {failure}", type(failure).__name__
            if spec.retry is not None and attempt < spec.retry.max_retries:
                attempt += 1
                execution.retries = attempt
                failed = execution.snapshot()
                failed.status, failed.error, failed.error_type = "retry", error, error_type
                failed.elapsed_time = round(time.perf_counter() - started, 6)
                failed.finished_at = time.time()
                run.emit(NodeRetried(failed, attempt))
                # Exponential backoff with a little jitter, in this node's task only.
                delay = spec.retry.interval * 2 ** (attempt - 1)
                await asyncio.sleep(delay * random.uniform(0.9, 1.1) if delay else 0)
                continue
            return _failed(call, error, error_type, started)
    except asyncio.CancelledError:
        execution.status = "stopped"
        execution.error = "The run was stopped."
        _finish(call, started)
        raise
    execution.inputs = dict(result.inputs) if result.inputs is not None else None
    execution.process_data = dict(result.process_data) if result.process_data else None
    execution.outputs = dict(result.outputs)
    execution.metadata.update(result.metadata or {})
    run.total_tokens += int(execution.metadata.get("total_tokens") or 0)
    execution.status = "succeeded"
    call.pool.set_outputs(spec.id, result.outputs)
    _finish(call, started)
    handles = set(result.handles)
    if DEFAULT_HANDLE in handles:
        handles.add(SUCCESS_BRANCH)
    execution.handles = sorted(handles)
    return handles


async def _attempt(function: NodeFunction, call: NodeCall) -> NodeResult:
    if call.spec.timeout is None:
        return await function(call)
    try:
        async with asyncio.timeout(call.spec.timeout):
            return await function(call)
    except TimeoutError:
        raise NodeFailed(
            f"The node timed out after {call.spec.timeout:g} s.", error_type="NodeTimeout"
        ) from None


def _failed(call: NodeCall, error: str, error_type: str, started: float) -> Collection[str]:
    run, spec, execution = call.run, call.spec, call.execution
    execution.error, execution.error_type = error, error_type
    if spec.error_strategy is None:
        execution.status = "failed"
        _finish(call, started)
        raise NodeAborted(execution)
    run.exceptions += 1
    execution.status = "exception"
    extra = {"error_message": error, "error_type": error_type}
    if spec.error_strategy == FAIL_BRANCH:
        outputs, handles = extra, {FAIL_BRANCH}
    else:
        outputs, handles = {**spec.default_outputs, **extra}, {DEFAULT_HANDLE, SUCCESS_BRANCH}
    execution.outputs = outputs
    execution.handles = sorted(handles)
    call.pool.set_outputs(spec.id, outputs)
    _finish(call, started)
    return handles


def _finish(call: NodeCall, started: float) -> None:
    execution = call.execution
    execution.elapsed_time = round(time.perf_counter() - started, 6)
    execution.finished_at = time.time()
    if call.spec.type not in CONTAINERS:
        call.run.emit(NodeFinished(execution))
