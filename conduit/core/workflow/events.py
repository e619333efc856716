"""What the engine reports as a run goes: plain records, handed to a sink as they happen.

The engine knows nothing of SSE or the event log: the workflow app runner turns these into
Dify's events (`node_started`, `node_finished`, `node_retry`, `iteration_*`, `loop_*`,
`text_chunk` / `message`) and the node execution rows. A sink is a plain callable: it must not
block (the runner's queues it and writes the log in batches off the engine's path).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

NodeStatus = Literal["running", "succeeded", "failed", "exception", "stopped", "retry", "paused"]


@dataclass
class NodeExecution:
    """One execution of one node (a node inside an iteration has one per item), as Dify's
    node events and its node execution records describe it."""

    id: str
    node_id: str
    node_type: str
    title: str
    index: int  # from 1, in the order nodes started in the run
    predecessor_node_id: str | None
    iteration_id: str | None = None
    loop_id: str | None = None
    iteration_index: int | None = None
    loop_index: int | None = None
    created_at: float = field(default_factory=time.time)
    inputs: dict[str, Any] | None = None
    process_data: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    status: NodeStatus = "running"
    error: str | None = None
    error_type: str | None = None
    elapsed_time: float = 0.0
    finished_at: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # total_tokens, total_price, ...
    retries: int = 0
    handles: list[str] = field(default_factory=list)  # the edges it left through, once ended

    def snapshot(self) -> NodeExecution:
        return replace(self, metadata=dict(self.metadata))


@dataclass(frozen=True)
class NodeStarted:
    execution: NodeExecution


@dataclass(frozen=True)
class NodeFinished:
    execution: NodeExecution


@dataclass(frozen=True)
class NodeRetried:
    execution: NodeExecution  # a snapshot: the failed attempt, status "retry"
    retry_index: int


@dataclass(frozen=True)
class ContainerEvent:
    """An iteration's or a loop's progress: `started`, `next` (an item or round begins, by
    `index`), `completed` (with the container's execution, its outputs and status)."""

    kind: Literal["iteration", "loop"]
    phase: Literal["started", "next", "completed"]
    execution: NodeExecution
    index: int = 0
    steps: int = 0
    previous_output: Any = None


@dataclass(frozen=True)
class TextChunk:
    """A piece of the answer, in the answer's order: from `answer_node_id`'s template, of the
    variable `selector` (or its constant text: `selector` is empty)."""

    text: str
    selector: tuple[str, ...]
    answer_node_id: str


@dataclass(frozen=True)
class FormEvent:
    """A human-input node's form answered as the run resumes: `human_input_form_filled` or
    `human_input_form_timeout`, with its data."""

    name: Literal["human_input_form_filled", "human_input_form_timeout"]
    data: dict[str, Any]


@dataclass(frozen=True)
class AgentLog:
    """An agent node's progress (Dify's `agent_log`): a round or a tool call began or ended;
    `data` is the event's data (its id, label, parent, status, node execution)."""

    data: dict[str, Any]


WorkflowEvent = (
    NodeStarted | NodeFinished | NodeRetried | ContainerEvent | TextChunk | FormEvent | AgentLog
)
Sink = Callable[[WorkflowEvent], None]
