"""The answer stream: text goes out in the order of the answer's template, as soon as it can.

A chatflow's answer nodes (`answer: "Hi {{#llm.text#}}!"`) and a workflow's end node (its
outputs, in order) are templates of constant text and variables. The stream walks the first
template whose node is *certain* to run (every branch above it decided, `Planner.certain`),
segment by segment: constant text goes out at once; a variable goes out when its node ends —
or, for a node that streams (an LLM's `text`), piece by piece as it is produced, the pieces
produced before the cursor got there first. When the template is done, the next certain one.
So text streams early (before the answer node itself runs, as in Dify) yet never out of order
and never from a branch that will not run.

For a workflow app only streaming variables go out (`text_chunk`); its other outputs are in
`workflow_finished`. A chatflow streams its whole answer (`message`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from conduit.core.workflow.events import Sink, TextChunk
from conduit.core.workflow.graph import Graph
from conduit.core.workflow.planner import NodeState, Planner, Step
from conduit.core.workflow.variables import (
    CONVERSATION,
    ENVIRONMENT,
    SYSTEM,
    Segment,
    VariablePool,
    as_text,
    segments,
    selector_of,
)

STREAMING_OUTPUTS = {
    "llm": "text",
    "agent": "text",
}  # node type → the output it produces piece by piece


@dataclass
class _Template:
    node_id: str
    parts: list[Segment]
    cursor: int = 0
    # The assigners above the answer: its conversation variables are sent once they ran.
    writers: frozenset[str] = frozenset()


@dataclass
class _Buffer:
    pieces: list[str] = field(default_factory=list)
    sent: int = 0


class AnswerStreamer:
    def __init__(
        self,
        graph: Graph,
        pool: VariablePool,
        emit: Sink,
        *,
        chatflow: bool,
    ) -> None:
        self._graph = graph
        self._pool = pool
        self._emit = emit
        self._chatflow = chatflow
        self._templates: dict[str, _Template] = {}
        for node in graph.nodes.values():
            if chatflow and node.type == "answer":
                self._templates[node.id] = _Template(
                    node.id,
                    segments(str(node.data.get("answer") or "")),
                    writers=frozenset(
                        ancestor
                        for ancestor in graph.ancestors(node.id)
                        if graph.nodes[ancestor].type == "assigner"
                    ),
                )
            elif not chatflow and node.type == "end":
                parts: list[Segment] = []
                for position, output in enumerate(node.data.get("outputs") or ()):
                    try:
                        parts.append(
                            selector_of(
                                output.get("value_selector"),
                                field=f"outputs[{position}].value_selector",
                            )
                        )
                    except ValueError:
                        continue
                self._templates[node.id] = _Template(node.id, parts)
        self._queue: list[str] = []  # templates certain to run, in the order they became so
        self._queued: set[str] = set()
        self._buffers: dict[tuple[str, str], _Buffer] = {}
        self._done: set[str] = set()
        self._skipped: set[str] = set()
        self._planner: Planner | None = None

    def chunk(self, node_id: str, variable: str, text: str) -> None:
        self._buffers.setdefault((node_id, variable), _Buffer()).pieces.append(text)
        if self._queue:
            self._pump()

    def progress(self, planner: Planner, step: Step, finished: str | None) -> None:
        self._planner = planner
        if finished is not None:
            self._done.add(finished)
        self._skipped.update(step.skipped)
        for node_id in self._templates:
            if node_id not in self._queued and planner.certain(node_id):
                self._queued.add(node_id)
                self._queue.append(node_id)
        self._pump()

    def finish(self) -> None:
        """The run ended: whatever the templates still hold that can be said, is."""
        self._pump()

    def _pump(self) -> None:
        while self._queue:
            template = self._templates[self._queue[0]]
            if not self._advance(template):
                return
            self._queue.pop(0)

    def _advance(self, template: _Template) -> bool:
        """Send what can be sent of `template`; True when all of it was."""
        while template.cursor < len(template.parts):
            part = template.parts[template.cursor]
            if isinstance(part, str):
                if self._chatflow:
                    self._send(part, (), template.node_id)
                template.cursor += 1
                continue
            if not self._variable(part, template):
                return False
            template.cursor += 1
        return True

    def _variable(self, selector: Sequence[str], template: _Template) -> bool:
        """Send what there is of one variable; True once all of it was sent."""
        answer_node = template.node_id
        node_id = selector[0]
        if node_id == CONVERSATION and not all(
            writer in self._done or self._state(writer) is NodeState.SKIPPED
            for writer in template.writers
        ):
            return False  # an assigner above the answer has yet to change it
        if node_id in (SYSTEM, ENVIRONMENT, CONVERSATION):
            if self._chatflow:
                self._send(as_text(self._pool.find(selector)), tuple(selector), answer_node)
            return True
        node = self._graph.nodes.get(node_id)
        if node is None or node_id in self._skipped or self._state(node_id) is NodeState.SKIPPED:
            return True  # never runs (or lives in another scope): nothing to say
        streams = STREAMING_OUTPUTS.get(node.type) == (selector[1] if len(selector) > 1 else None)
        buffer = self._buffers.get((node_id, selector[1])) if streams else None
        if buffer is not None and len(selector) == 2:
            while buffer.sent < len(buffer.pieces):
                self._send(buffer.pieces[buffer.sent], tuple(selector), answer_node)
                buffer.sent += 1
        if node_id not in self._done:
            return False
        if buffer is None and (self._chatflow or streams):
            self._send(as_text(self._pool.find(selector)), tuple(selector), answer_node)
        return True

    def _state(self, node_id: str) -> NodeState | None:
        return self._planner.state(node_id) if self._planner is not None else None

    def _send(self, text: str, selector: tuple[str, ...], answer_node: str) -> None:
        if text:
            self._emit(TextChunk(text=text, selector=selector, answer_node_id=answer_node))
