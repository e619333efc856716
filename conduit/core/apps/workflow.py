"""The runner of workflow runs: the graph engine (`core/workflow`) driven inside the run
lifecycle, its events written to the run's event log in Dify's workflow envelope.

Events (Dify's full converter, `dify-api.md` §4.3–4.4): `workflow_started`, then per node
`node_started` … `node_finished` (`node_retry` per failed attempt; iteration and loop nodes
as `iteration_*` / `loop_*`), `text_chunk` as the end node's streaming outputs are made, and
`workflow_finished` (status `succeeded`, `failed`, `stopped`, `partial-succeeded`). A node
that fails with no error strategy fails the run — still a `workflow_finished` (HTTP 200), no
`error` event, as in Dify.

The engine hands events to a plain callable; here they are queued and written to the log by
one writer task, in batches of events of one kind (`EventLog.extend`), off the engine's path:
a node never waits for Redis. The lifecycle stores the `WorkflowResult` (with its node
executions) through the `WorkflowStore` before the terminal event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from conduit.core.apps.annotations import (
    AnnotationHit,
    AnnotationPlan,
    MatchAnnotation,
    annotated,
)
from conduit.core.apps.chat import message_envelope
from conduit.core.llm.provider import Usage
from conduit.core.runs.eventlog.base import EventLog
from conduit.core.runs.kinds import Event, RunStore
from conduit.core.runs.spec import RunSpec
from conduit.core.runs.status import RunStatus
from conduit.core.workflow.engine import (
    NodeAborted,
    NodeFunction,
    Restored,
    RunContext,
    RunLimits,
    StepLimitExceeded,
    run_scope,
)
from conduit.core.workflow.events import (
    AgentLog,
    ContainerEvent,
    FormEvent,
    NodeExecution,
    NodeFinished,
    NodeRetried,
    NodeStarted,
    TextChunk,
    WorkflowEvent,
)
from conduit.core.workflow.graph import Graph, WorkflowGraph, WorkflowGraphError
from conduit.core.workflow.human_input import NodePaused, PendingForm, RunPaused
from conduit.core.workflow.services import WorkflowServices
from conduit.core.workflow.streaming import AnswerStreamer
from conduit.core.workflow.variables import VariablePool
from conduit.errors import ConduitError

WorkflowMode = Literal["workflow", "advanced-chat"]
WorkflowStatus = Literal["running", "succeeded", "failed", "stopped", "partial-succeeded", "paused"]
KIND = "workflow"


@dataclass(frozen=True)
class ChatTurn:
    """A chatflow run's turn of its conversation: its message, the user's query, the earlier
    turns (for LLM nodes' memory) and the conversation's variables as the turn starts."""

    message_id: str
    conversation_id: str
    query: str
    history: list[tuple[str, str]] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "conversation_id": self.conversation_id,
            "query": self.query,
            "history": [list(turn) for turn in self.history],
            "variables": self.variables,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChatTurn:
        return cls(
            message_id=str(data["message_id"]),
            conversation_id=str(data["conversation_id"]),
            query=str(data.get("query") or ""),
            history=[(str(q), str(a)) for q, a in data.get("history") or ()],
            variables=dict(data.get("variables") or {}),
        )


@dataclass(frozen=True)
class WorkflowRunBody:
    """A workflow run: which workflow (its graph as published), its checked inputs, the
    `sys.*` values, the environment's and the conversation's variables, who started it."""

    workflow_run_id: str
    workflow_id: str
    graph: dict[str, Any]
    inputs: dict[str, Any]
    system: dict[str, Any]
    # The environment variables as stored ({name, value, value_type}: secrets encrypted).
    environment: list[dict[str, Any]] = field(default_factory=list)
    created_by: dict[str, Any] = field(default_factory=dict)
    mode: WorkflowMode = "workflow"
    # How each `model.provider` of the graph is reached (`ModelRegistry.resolve` refs).
    model_refs: dict[str, dict[str, Any]] = field(default_factory=dict)
    chat: ChatTurn | None = None  # a chatflow's turn
    # A chatflow with annotation reply on: the annotations its query is compared with.
    annotation: AnnotationPlan | None = None
    # How many times the run was resumed after a pause (a human-input form answered): a
    # resumed execution takes up the nodes that ended before.
    resumption: int = 0
    # An async run's task (its first execution's task id; a resumed one has its own).
    async_task_id: str | None = None
    # What its executions before the pause counted (`total_tokens`, `exceptions_count`,
    # `elapsed_time`): a resumed run's totals go on from them.
    prior: dict[str, Any] = field(default_factory=dict)
    # Nodes that ended before a pause whose stored outputs were cut (too big to store whole):
    # their outputs and edges as they were ({node_id: {"outputs", "handles"}}), so that the
    # resumed run takes them up rather than running them again.
    kept: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "workflow_run_id": self.workflow_run_id,
            **({"resumption": self.resumption} if self.resumption else {}),
            **({"async_task_id": self.async_task_id} if self.async_task_id else {}),
            **({"prior": self.prior} if self.prior else {}),
            **({"kept": self.kept} if self.kept else {}),
            "workflow_id": self.workflow_id,
            "graph": self.graph,
            "inputs": self.inputs,
            "system": self.system,
            "environment": self.environment,
            "created_by": self.created_by,
            "mode": self.mode,
            "model_refs": self.model_refs,
            "chat": self.chat.to_json() if self.chat else None,
            **({"annotation": self.annotation.to_json()} if self.annotation else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkflowRunBody:
        return cls(
            workflow_run_id=str(data["workflow_run_id"]),
            workflow_id=str(data["workflow_id"]),
            graph=dict(data["graph"]),
            inputs=dict(data.get("inputs") or {}),
            system=dict(data.get("system") or {}),
            environment=[dict(v) for v in data.get("environment") or ()],
            created_by=dict(data.get("created_by") or {}),
            mode="advanced-chat" if data.get("mode") == "advanced-chat" else "workflow",
            model_refs=dict(data.get("model_refs") or {}),
            chat=ChatTurn.from_json(data["chat"]) if data.get("chat") else None,
            annotation=(
                AnnotationPlan.from_json(data["annotation"]) if data.get("annotation") else None
            ),
            resumption=int(data.get("resumption") or 0),
            async_task_id=str(data["async_task_id"]) if data.get("async_task_id") else None,
            prior=dict(data.get("prior") or {}),
            kept=dict(data.get("kept") or {}),
        )


@dataclass
class WorkflowResult:
    """How a workflow run ended: written onto its run row (and its node executions) by the
    `WorkflowStore`."""

    task_id: str
    tenant_id: str
    app_id: str
    workflow_run_id: str
    workflow_id: str
    status: WorkflowStatus
    outputs: dict[str, Any]
    error: str | None
    elapsed_time: float
    total_tokens: int
    total_steps: int
    exceptions_count: int
    created_at: int
    finished_at: float
    created_by: dict[str, Any]
    node_executions: list[NodeExecution] = field(default_factory=list)
    asynchronous: bool = False
    error_code: str | None = None  # a failure outside the graph (the run's time limit...)
    error_status: int | None = None
    # A chatflow's turn: its message, the answer its answer nodes streamed, the usage of its
    # models, the conversation's variables as the run left them.
    chat: ChatTurn | None = None
    answer: str = ""
    usage: Usage = field(default_factory=Usage)
    latency: float = 0.0
    conversation_variables: dict[str, Any] | None = None
    # The annotation that answered the turn instead of the workflow (Dify's `annotation_reply`).
    annotation_reply: dict[str, Any] | None = None
    annotation_score: float = 0.0
    # A run that paused: the forms it waits on, and its spec (what resumes it).
    forms: list[PendingForm] = field(default_factory=list)
    resume_spec: dict[str, Any] | None = None

    # Its async task's id (a resumed execution runs under a task id of its own).
    async_task_id: str | None = None
    resumed: bool = False  # it paused before (its forms are closed when it ends)

    def ids(self) -> dict[str, str]:
        """What each of its node execution rows names."""
        return {
            "tenant_id": self.tenant_id,
            "app_id": self.app_id,
            "workflow_id": self.workflow_id,
            "workflow_run_id": self.workflow_run_id,
        }


class WorkflowStore(Protocol):
    """Where workflow results are written (the services layer)."""

    async def finish(self, result: WorkflowResult) -> dict[str, Any]:
        """Persist the run's end and its node executions; returns nothing the events need
        beyond what the result holds (an empty dict)."""

    async def renew_many(
        self, runs: Sequence[tuple[RunSpec, list[NodeExecution] | None]]
    ) -> set[str]:
        """The runs are alive; store each one's node executions that ended since its last
        checkpoint (see `RunStore.renew_many`)."""

    async def claim(self, spec: RunSpec, lease_seconds: float) -> bool:
        """Take the run for an executor about to start it (see `RunStore.claim`)."""

    def resuming(self, run_id: str) -> bool:
        """Whether the run was claimed from a dead executor (it resumes)."""

    async def restored_nodes(self, run_id: str) -> dict[str, Restored]:
        """The nodes its earlier execution ended, to take up again."""


ServicesFactory = Callable[[RunSpec], WorkflowServices]


def envelope(spec: RunSpec, event: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Dify's envelope of a workflow event: a workflow app's carries the run's id; a
    chatflow's is the chat envelope (conversation, message, creation time) with it."""
    body: WorkflowRunBody = spec.body
    payload: dict[str, Any] = {"event": event}
    if body.chat is not None:
        payload.update(
            conversation_id=body.chat.conversation_id,
            message_id=body.chat.message_id,
            created_at=spec.created_at,
        )
    payload["workflow_run_id"] = body.workflow_run_id
    payload["task_id"] = spec.task_id
    if data is not None:
        payload["data"] = data
    return payload


def chat_event(spec: RunSpec, event: str, **fields: Any) -> dict[str, Any]:
    """A chatflow's message event (`message`, `message_end`, `error`) in the chat envelope."""
    turn = spec.body.chat
    if event != "error":
        fields = {"task_id": spec.task_id, **fields}
    return message_envelope(
        "advanced-chat", turn.conversation_id, turn.message_id, spec.created_at, event, **fields
    )


def _seconds(value: float | None) -> int | None:
    return int(value) if value is not None else None


def node_data(execution: NodeExecution, *, finished: bool) -> dict[str, Any]:
    """A node execution as Dify's `node_started` / `node_finished` `data` shows it."""
    data: dict[str, Any] = {
        "id": execution.id,
        "node_id": execution.node_id,
        "node_type": execution.node_type,
        "title": execution.title,
        "index": execution.index,
        "predecessor_node_id": execution.predecessor_node_id,
        "inputs": execution.inputs if finished else None,
        "created_at": _seconds(execution.created_at),
        "extras": {},
        "iteration_id": execution.iteration_id,
        "loop_id": execution.loop_id,
        "parallel_id": None,
        "parallel_start_node_id": None,
        "parent_parallel_id": None,
        "parent_parallel_start_node_id": None,
    }
    if finished:
        metadata = dict(execution.metadata)
        if execution.iteration_index is not None:
            metadata["iteration_index"] = execution.iteration_index
        if execution.loop_index is not None:
            metadata["loop_index"] = execution.loop_index
        data.update(
            {
                "process_data": execution.process_data,
                "outputs": execution.outputs,
                "status": execution.status,
                "error": execution.error,
                "elapsed_time": execution.elapsed_time,
                "execution_metadata": metadata or None,
                "finished_at": _seconds(execution.finished_at),
                "files": [],
            }
        )
    return data


def container_data(event: ContainerEvent) -> dict[str, Any]:
    execution = event.execution
    data: dict[str, Any] = {
        "id": execution.id,
        "node_id": execution.node_id,
        "node_type": execution.node_type,
        "title": execution.title,
        "created_at": _seconds(execution.created_at),
        "extras": {},
    }
    if event.phase == "started":
        data.update({"metadata": {}, "inputs": execution.inputs})
    elif event.phase == "next":
        data["index"] = event.index
        if event.kind == "loop":
            data["pre_loop_output"] = event.previous_output
    else:
        data.update(
            {
                "outputs": execution.outputs,
                "inputs": execution.inputs,
                "status": execution.status,
                "error": execution.error,
                "elapsed_time": execution.elapsed_time,
                "total_tokens": int(execution.metadata.get("total_tokens") or 0),
                "execution_metadata": dict(execution.metadata),
                "finished_at": _seconds(execution.finished_at),
                "steps": event.steps,
            }
        )
    return data


def event_of(spec: RunSpec, event: WorkflowEvent) -> Event:
    """The log event of an engine event."""
    match event:
        case NodeStarted(execution=execution):
            return "node_started", envelope(
                spec, "node_started", node_data(execution, finished=False)
            )
        case NodeFinished(execution=execution):
            return "node_finished", envelope(
                spec, "node_finished", node_data(execution, finished=True)
            )
        case NodeRetried(execution=execution, retry_index=retry_index):
            data = node_data(execution, finished=True)
            data["retry_index"] = retry_index
            return "node_retry", envelope(spec, "node_retry", data)
        case ContainerEvent(kind=kind, phase=phase):
            name = f"{kind}_{phase}"
            return name, envelope(spec, name, container_data(event))
        case TextChunk(text=text, selector=selector) if spec.body.chat is not None:
            return "message", chat_event(
                spec,
                "message",
                id=spec.body.chat.message_id,
                answer=text,
                from_variable_selector=list(selector) or None,
            )
        case TextChunk(text=text, selector=selector):
            return "text_chunk", envelope(
                spec, "text_chunk", {"text": text, "from_variable_selector": list(selector)}
            )
        case FormEvent(name=name, data=data):
            return name, envelope(spec, name, dict(data))
        case AgentLog(data=data):
            payload = envelope(spec, "agent_log", dict(data))
            if spec.body.chat is not None:
                del payload["workflow_run_id"]  # (Dify's chat family sends none with it)
            return "agent_log", payload
    raise TypeError(f"not an engine event: {event!r}")


class _Writer:
    """Queues events and writes them to the log in order, batching consecutive events of one
    kind into one `extend` (one Redis round trip)."""

    def __init__(self, log: EventLog, task_id: str) -> None:
        self._log = log
        self._task_id = task_id
        self._pending: list[Event] = []
        self._wake = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"workflow-events-{self._task_id}")

    def put(self, event: Event) -> None:
        self._pending.append(event)
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()
            if self._closed and not self._pending:
                return

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            start = 0
            while start < len(batch):
                name = batch[start][0]
                end = start + 1
                while end < len(batch) and batch[end][0] == name:
                    end += 1
                await self._log.extend(self._task_id, name, [p for _, p in batch[start:end]])
                start = end

    async def close(self) -> None:
        """Write what is queued, then stop (also when the run was cancelled)."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await asyncio.shield(self._task)


class WorkflowRunner:
    """Runs of workflow apps."""

    kind = KIND

    def __init__(
        self,
        *,
        store: WorkflowStore,
        nodes: Mapping[str, NodeFunction],
        services: ServicesFactory,
        limits: RunLimits | None = None,
        match_annotation: MatchAnnotation | None = None,
    ) -> None:
        self.store: RunStore = store  # what the lifecycle needs of it
        self._store = store
        self._nodes = nodes
        self._services = services
        self._limits = limits or RunLimits()
        self._match_annotation = match_annotation

    def decode(self, body: dict[str, Any]) -> WorkflowRunBody:
        return WorkflowRunBody.from_json(body)

    def start(self, spec: RunSpec) -> WorkflowExecution:
        # Claimed from a dead executor, or resumed after a pause: it takes up its ended nodes.
        resuming = self._store.resuming(spec.body.workflow_run_id) or spec.body.resumption > 0
        return WorkflowExecution(
            spec,
            self._nodes,
            self._services(spec),
            self._limits,
            restore=self._store.restored_nodes if resuming else None,
            match_annotation=self._match_annotation,
        )

    def terminal_events(
        self, spec: RunSpec, result: WorkflowResult, stored: dict[str, Any]
    ) -> list[Event]:
        if result.status == "paused":
            # It waits on its forms: each one's `human_input_required`, then the pause.
            return [
                *(
                    ("human_input_required", envelope(spec, "human_input_required", f.required()))
                    for f in result.forms
                ),
                ("workflow_paused", envelope(spec, "workflow_paused", paused_data(result))),
            ]
        finished: Event = (
            "workflow_finished",
            envelope(spec, "workflow_finished", finished_data(result)),
        )
        turn = spec.body.chat
        if turn is None:
            return [finished]
        if result.annotation_reply is not None and result.status == "succeeded":
            # Answered by an annotation: no workflow ran (as Dify's chatflow: the message ends).
            return [
                (
                    "message_end",
                    chat_event(spec, "message_end", id=turn.message_id, metadata=stored),
                )
            ]
        if result.status == "failed":
            # As Dify's chatflow: the run's end, then an `error` that ends the stream.
            return [
                finished,
                (
                    "error",
                    chat_event(
                        spec,
                        "error",
                        status=result.error_status or 400,
                        code=result.error_code or "invalid_param",
                        message=f"Run failed: {result.error}",
                    ),
                ),
            ]
        end: Event = (
            "message_end",
            chat_event(spec, "message_end", id=turn.message_id, metadata=stored),
        )
        # Dify's current order: message_end, then workflow_finished (stopped: the reverse).
        return [finished, end] if result.status == "stopped" else [end, finished]


def paused_data(result: WorkflowResult) -> dict[str, Any]:
    """`workflow_paused`'s data: the nodes that wait, why (each one's form), the run so far."""
    return {
        "workflow_run_id": result.workflow_run_id,
        "workflow_id": result.workflow_id,
        "paused_nodes": [form.node_id for form in result.forms],
        "outputs": result.outputs,
        "reasons": [{"TYPE": "human_input_required", **form.required()} for form in result.forms],
        "status": "paused",
        "created_at": result.created_at,
        "elapsed_time": result.elapsed_time,
        "total_tokens": result.total_tokens,
        "total_steps": result.total_steps,
    }


def finished_data(result: WorkflowResult) -> dict[str, Any]:
    return {
        "id": result.workflow_run_id,
        "workflow_id": result.workflow_id,
        "status": result.status,
        "outputs": result.outputs,
        "error": result.error,
        "elapsed_time": result.elapsed_time,
        "total_tokens": result.total_tokens,
        "total_steps": result.total_steps,
        "created_by": result.created_by,
        "created_at": result.created_at,
        "finished_at": int(result.finished_at),
        "exceptions_count": result.exceptions_count,
        "files": [],
    }


class WorkflowExecution:
    """One workflow run: the engine over the graph, its events to the log."""

    def __init__(
        self,
        spec: RunSpec,
        nodes: Mapping[str, NodeFunction],
        services: WorkflowServices,
        limits: RunLimits,
        *,
        restore: Callable[[str], Awaitable[dict[str, Restored]]] | None = None,
        match_annotation: MatchAnnotation | None = None,
    ) -> None:
        self._restore = restore
        self._match_annotation = match_annotation
        self._annotation: AnnotationHit | None = None
        self._spec = spec
        self._body: WorkflowRunBody = spec.body
        self._nodes = nodes
        self._services = services
        self._limits = limits
        self._started = time.perf_counter()
        self._executions: list[NodeExecution] = []
        self._checkpointed = 0
        self._failure: str | None = None
        self._context: RunContext | None = None
        self._outputs: dict[str, Any] = {}
        self._answer: list[str] = []
        self._pool: VariablePool | None = None
        self._paused: list[NodePaused] = []

    async def run(self, log: EventLog) -> None:
        spec, body = self._spec, self._body
        graph = WorkflowGraph.parse(body.graph)
        turn = body.chat
        restored = None
        if self._restore is not None:
            # Its worker died, or it resumes after a pause: the nodes its earlier executions
            # ended are taken as they were (those too big to store whole, from its spec).
            restored = await self._restore(body.workflow_run_id)
            for node_id, kept in body.kept.items():
                restored.setdefault(
                    node_id, Restored(outputs=dict(kept["outputs"]), handles=kept["handles"])
                )
        # A resumed turn whose first execution ended nodes ran the workflow: it goes on.
        if turn is not None and body.annotation is not None and not restored:
            hit = await annotated(self._match_annotation, body.annotation)
            if hit is not None:
                await self._answer_with(log, hit)
                return
            if self._restore is not None:
                # The first execution may have answered with an annotation not found now
                # (edited, deleted, the reply off): its `message` is taken back first.
                await log.extend(
                    spec.task_id,
                    "message_replace",
                    [chat_event(spec, "message_replace", id=turn.message_id, answer="")],
                )
        pool = VariablePool(
            system=body.system,
            environment=self._services.environment(body.environment),
            conversation=dict(turn.variables) if turn is not None else None,
        )
        self._pool = pool
        writer = _Writer(log, spec.task_id)

        def emit(event: WorkflowEvent) -> None:
            if isinstance(event, TextChunk):
                self._answer.append(event.text)
            if isinstance(event, NodeFinished) or (
                isinstance(event, ContainerEvent) and event.phase == "completed"
            ):
                self._executions.append(event.execution)
            writer.put(event_of(spec, event))

        context = RunContext(
            graph=graph,
            nodes=self._nodes,
            emit=emit,
            inputs=body.inputs,
            services=self._services,
            limits=self._limits,
        )
        context.stream = AnswerStreamer(graph.top, pool, emit, chatflow=body.mode != "workflow")
        self._context = context
        writer.put(
            (
                "workflow_started",
                envelope(
                    spec,
                    "workflow_started",
                    {
                        "id": body.workflow_run_id,
                        "workflow_id": body.workflow_id,
                        "inputs": body.inputs,
                        "created_at": spec.created_at,
                        "reason": "initial" if self._restore is None else "resumption",
                    },
                ),
            )
        )
        writer.start()
        try:
            await run_scope(context, graph.top, pool, restored=restored)
            self._outputs = _end_outputs(graph, pool)
        except RunPaused as paused:
            # Nothing else can run until its forms are answered: the run pauses here.
            self._paused = paused.waiting
            self._executions.extend(w.execution for w in paused.waiting if w.execution)
        except (NodeAborted, StepLimitExceeded) as failure:
            self._failure = failure.message
        finally:
            with contextlib.suppress(Exception):
                await writer.close()

    async def _answer_with(self, log: EventLog, hit: AnnotationHit) -> None:
        """The annotation's answer, whole, in one `message`; the workflow does not run. A run
        resumed after its worker died sends it as `message_replace`: the first execution may
        have sent it already, and a follower must assemble it once."""
        turn = self._body.chat
        assert turn is not None
        name = "message" if self._restore is None else "message_replace"
        event = chat_event(self._spec, name, id=turn.message_id, answer=hit.answer)
        if name == "message":
            event["from_variable_selector"] = None
        await log.extend(self._spec.task_id, name, [event])
        self._annotation = hit
        self._answer = [hit.answer]
        self._outputs = {"answer": hit.answer}

    def checkpoint(self) -> list[NodeExecution] | None:
        """The node executions that ended since the last checkpoint."""
        if len(self._executions) == self._checkpointed:
            return None
        fresh = self._executions[self._checkpointed :]
        self._checkpointed = len(self._executions)
        return fresh

    def result(self, status: RunStatus, error: ConduitError | None) -> WorkflowResult:
        context = self._context
        prior = self._body.prior  # (what its executions before a pause counted)
        ended: WorkflowStatus
        if status == RunStatus.STOPPED:
            ended = "stopped"
        elif error is not None or self._failure is not None:
            ended = "failed"
        elif self._paused:
            ended = "paused"
        elif (context is not None and context.exceptions) or prior.get("exceptions_count"):
            ended = "partial-succeeded"
        else:
            ended = "succeeded"
        message = error.message if error is not None else self._failure
        return WorkflowResult(
            task_id=self._spec.task_id,
            tenant_id=self._spec.tenant_id,
            app_id=self._spec.app_id,
            workflow_run_id=self._body.workflow_run_id,
            workflow_id=self._body.workflow_id,
            status=ended,
            outputs=self._outputs if ended in ("succeeded", "partial-succeeded") else {},
            error=message if ended == "failed" else None,
            elapsed_time=round(
                time.perf_counter() - self._started + float(prior.get("elapsed_time") or 0), 6
            ),
            total_tokens=(context.total_tokens if context else 0)
            + int(prior.get("total_tokens") or 0),
            total_steps=context.steps if context else 0,
            exceptions_count=(context.exceptions if context else 0)
            + int(prior.get("exceptions_count") or 0),
            created_at=self._spec.created_at,
            finished_at=time.time(),
            created_by=self._body.created_by,
            node_executions=list(self._executions),
            asynchronous=self._spec.asynchronous,
            error_code=error.code if error is not None else None,
            error_status=error.status if error is not None else None,
            chat=self._body.chat,
            answer="".join(self._answer),
            usage=self._usage(),
            latency=round(time.perf_counter() - self._started, 3),
            conversation_variables=(
                dict(self._pool.conversation)
                if self._pool is not None and self._body.chat is not None
                else None
            ),
            annotation_reply=self._annotation.metadata() if self._annotation else None,
            annotation_score=self._annotation.score if self._annotation else 0.0,
            forms=[paused.form for paused in self._paused] if ended == "paused" else [],
            resume_spec=self._spec.to_json() if ended == "paused" else None,
            async_task_id=(self._body.async_task_id or self._spec.task_id)
            if self._spec.asynchronous
            else None,
            resumed=self._body.resumption > 0,
        )

    def _usage(self) -> Usage:
        """The tokens of the run's model nodes (their `usage` outputs, summed)."""
        prompt = completion = 0
        for execution in self._executions:
            usage = (execution.outputs or {}).get("usage")
            if isinstance(usage, dict):
                prompt += int(usage.get("prompt_tokens") or 0)
                completion += int(usage.get("completion_tokens") or 0)
        return Usage(prompt_tokens=prompt, completion_tokens=completion)


def _end_outputs(graph: WorkflowGraph, pool: VariablePool) -> dict[str, Any]:
    """The outputs of the end node that ran (the first, when branches end apart)."""
    for node in graph.top.nodes.values():
        if node.type == "end":
            outputs = pool.outputs(node.id)
            if outputs is not None:
                return outputs
    return {}


class BlockingWorkflowReply:
    """Folds a workflow run's events into Dify's blocking reply (`workflow_finished`'s data
    under the run's ids; a paused run's: its `workflow_paused`, status `paused`, as Dify)."""

    def add(self, name: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        if name == "workflow_paused":
            paused = dict(payload.get("data") or {})
            return {
                "task_id": payload.get("task_id"),
                "workflow_run_id": payload.get("workflow_run_id"),
                "data": {
                    "id": paused.get("workflow_run_id"),
                    "workflow_id": paused.get("workflow_id"),
                    "status": "paused",
                    "outputs": paused.get("outputs") or {},
                    "error": None,
                    "elapsed_time": paused.get("elapsed_time"),
                    "total_tokens": paused.get("total_tokens"),
                    "total_steps": paused.get("total_steps"),
                    "created_at": paused.get("created_at"),
                    "finished_at": None,
                    "paused_nodes": paused.get("paused_nodes") or [],
                    "reasons": paused.get("reasons") or [],
                },
            }
        if name != "workflow_finished":
            return None
        data = dict(payload.get("data") or {})
        data.pop("created_by", None)
        data.pop("files", None)
        return {
            "task_id": payload.get("task_id"),
            "workflow_run_id": payload.get("workflow_run_id"),
            "data": data,
        }


async def run_single_node(
    graph_data: dict[str, Any],
    node_id: str,
    values: Mapping[str, Any],
    *,
    nodes: Mapping[str, NodeFunction],
    services: WorkflowServices,
    environment: Sequence[Mapping[str, Any]] = (),
    limits: RunLimits | None = None,
) -> NodeExecution:
    """Run one node of a graph alone (the console's single-step run): `values` give what it
    reads, keyed by selector (`"#node.var#"`, `"node.var"` or, for the start node, the input's
    name). Returns its execution as it ended (`failed` with the error when it failed)."""
    graph = WorkflowGraph.parse(graph_data)
    spec = graph.nodes.get(node_id)
    if spec is None:
        raise WorkflowGraphError(f"node {node_id!r} is not in the workflow")
    pool = VariablePool(environment=services.environment(environment))
    inputs: dict[str, Any] = {}
    for key, value in values.items():
        parts = str(key).strip("#").split(".")
        if len(parts) < 2:
            inputs[str(key)] = value
            continue
        found = pool.namespace(parts[0])
        if found is None:
            pool.set_outputs(parts[0], {})
            found = pool.namespace(parts[0])
        assert found is not None
        found[parts[1]] = value
    finished: list[NodeExecution] = []

    def emit(event: WorkflowEvent) -> None:
        if isinstance(event, ContainerEvent):
            if event.phase == "completed":
                finished.append(event.execution)
        elif isinstance(event, NodeFinished) and event.execution.node_id == node_id:
            finished.append(event.execution)

    context = RunContext(
        graph=graph,
        nodes=nodes,
        emit=emit,
        inputs=inputs,
        services=services,
        limits=limits or RunLimits(),
    )
    alone = Graph(root_id=node_id, nodes={node_id: spec}, edges=[])
    try:
        await run_scope(context, alone, pool)
    except NodeAborted as aborted:
        return aborted.execution
    except RunPaused as paused:
        execution = paused.waiting[0].execution  # a human-input node: `paused`, unasked
        assert execution is not None
        return execution
    except StepLimitExceeded as exceeded:
        raise WorkflowGraphError(exceeded.message) from None
    return finished[-1]
