"""A workflow's graph as Dify's DSL draws it: nodes, edges, and the scopes inside containers.

A DSL graph is `{nodes: [...], edges: [...]}`. A node's own settings are under `data`
(`data.type` is its kind); a node inside an iteration or a loop names its container in
`parentId`; an edge joins `source` to `target` and leaves its source through `sourceHandle`
("source" by default; an if-else case id or "false", a question-classifier class id,
"fail-branch" / "success-branch" for a node whose errors take a branch of their own).

`WorkflowGraph.parse` checks the whole graph once, when a workflow is loaded or imported, and
names what is wrong (an unknown node type with its node, an edge to nowhere, a start missing):
nothing later has to second-guess it. A `Graph` is one scope of it — the top level, or the
children of one iteration or loop — which is what the planner and the engine walk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from conduit.core.tools.base import ToolError
from conduit.core.workflow import agent_node, human_input, tool_node
from conduit.errors import InvalidParam

# The node types Conduit runs (Dify's `data.type` values). `iteration-start` and `loop-start`
# are the entry helpers inside containers; `loop-end` ends a loop's round early.
NODE_TYPES = frozenset(
    {
        "start",
        "end",
        "answer",
        "llm",
        "knowledge-retrieval",
        "if-else",
        "code",
        "template-transform",
        "http-request",
        "variable-aggregator",
        "variable-assigner",  # the legacy name of variable-aggregator
        "assigner",
        "iteration",
        "iteration-start",
        "loop",
        "loop-start",
        "loop-end",
        "parameter-extractor",
        "question-classifier",
        "list-operator",
        "document-extractor",
        "tool",  # the built-in tools (`tool_node.py`)
        "human-input",  # a form a person answers; the run pauses (`human_input.py`)
        "agent",  # a model calling tools in rounds (`agent_node.py`)
    }
)
CONTAINERS = frozenset({"iteration", "loop"})
# Nodes that choose among their out-edges (the others take every edge they have).
BRANCHING = frozenset({"if-else", "question-classifier", "human-input"})

DEFAULT_HANDLE = "source"
FAIL_BRANCH = "fail-branch"
SUCCESS_BRANCH = "success-branch"


class WorkflowGraphError(InvalidParam):
    """The graph cannot be run; the message names the node or edge at fault."""

    code = "invalid_param"
    default_message = "The workflow graph is not valid."


@dataclass(frozen=True)
class RetryConfig:
    max_retries: int
    interval: float  # seconds before the first retry; doubled per retry (exponential backoff)

    @classmethod
    def from_dsl(cls, data: Mapping[str, Any] | None) -> RetryConfig | None:
        if not data or not data.get("enabled"):
            return None
        retries = int(data.get("max_retries") or 0)
        # Dify's `retry_interval` is in milliseconds.
        interval = float(data.get("retry_interval") or 0) / 1000
        return cls(max_retries=max(0, min(retries, 10)), interval=max(0.0, interval))


@dataclass(frozen=True)
class NodeSpec:
    """One node: its id, kind, title, the DSL's `data`, its container (None at the top level)
    and the error handling every kind shares."""

    id: str
    type: str
    title: str
    data: Mapping[str, Any]
    parent_id: str | None = None
    retry: RetryConfig | None = None
    error_strategy: str | None = None  # "fail-branch" | "default-value" | None (abort the run)
    timeout: float | None = None  # seconds, per attempt

    @property
    def default_outputs(self) -> dict[str, Any]:
        """The outputs a "default-value" node reports when it fails (DSL `default_value`)."""
        values: dict[str, Any] = {}
        for item in self.data.get("default_value") or ():
            if isinstance(item, Mapping) and item.get("key"):
                values[str(item["key"])] = item.get("value")
        return values


@dataclass(frozen=True)
class Edge:
    id: str
    source: str
    target: str
    handle: str = DEFAULT_HANDLE


@dataclass
class Graph:
    """One scope: its nodes, their edges, the node it starts at."""

    root_id: str
    nodes: dict[str, NodeSpec]
    edges: list[Edge]
    outgoing: dict[str, list[Edge]] = field(default_factory=dict)
    incoming: dict[str, list[Edge]] = field(default_factory=dict)
    # Each node's ancestors that choose among edges (`planner.deciders`, computed once).
    deciders: dict[str, frozenset[str]] | None = None

    def __post_init__(self) -> None:
        self.outgoing = {node_id: [] for node_id in self.nodes}
        self.incoming = {node_id: [] for node_id in self.nodes}
        for edge in self.edges:
            self.outgoing[edge.source].append(edge)
            self.incoming[edge.target].append(edge)

    def ancestors(self, node_id: str) -> set[str]:
        seen: set[str] = set()
        stack = [edge.source for edge in self.incoming[node_id]]
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(edge.source for edge in self.incoming[current])
        return seen


@dataclass
class WorkflowGraph:
    """The whole graph of a workflow: the top-level scope and each container's scope."""

    top: Graph
    scopes: dict[str, Graph]  # container node id → its children's scope
    nodes: dict[str, NodeSpec]

    def scope(self, container_id: str) -> Graph:
        return self.scopes[container_id]

    def of_type(self, *types: str) -> list[NodeSpec]:
        return [node for node in self.nodes.values() if node.type in types]

    def check_chatflow(self) -> None:
        """What a chatflow (an advanced-chat app) cannot run yet, refused naming the node."""
        for node in self.of_type(human_input.NODE_TYPE):
            raise WorkflowGraphError(
                f"node {node.id!r} ({node.title}): human-input nodes run in workflow apps; "
                "this server does not pause a chatflow's turn yet"
            )

    @classmethod
    def parse(cls, graph: Any, *, node_types: Iterable[str] = NODE_TYPES) -> WorkflowGraph:
        """The graph of a DSL `workflow.graph`, checked; `WorkflowGraphError` says what is
        wrong with it."""
        known = frozenset(node_types)
        if not isinstance(graph, Mapping):
            raise WorkflowGraphError("graph: must be an object with nodes and edges")
        raw_nodes = graph.get("nodes")
        raw_edges = graph.get("edges") or []
        if not isinstance(raw_nodes, list) or not isinstance(raw_edges, list):
            raise WorkflowGraphError("graph: nodes and edges must be lists")
        nodes: dict[str, NodeSpec] = {}
        for raw in raw_nodes:
            node = _node(raw, known)
            if node is None:
                continue
            if node.id in nodes:
                raise WorkflowGraphError(f"graph: node id {node.id!r} is used twice")
            nodes[node.id] = node
        for node in nodes.values():
            if node.parent_id is not None:
                parent = nodes.get(node.parent_id)
                if parent is None or parent.type not in CONTAINERS:
                    raise WorkflowGraphError(
                        f"node {node.id!r} ({node.title}): its parentId {node.parent_id!r} "
                        "is not an iteration or loop node of this graph"
                    )
        edges_by_scope: dict[str | None, list[Edge]] = {}
        for position, raw in enumerate(raw_edges):
            if not isinstance(raw, Mapping):
                raise WorkflowGraphError(f"graph.edges[{position}]: must be an object")
            source, target = str(raw.get("source", "")), str(raw.get("target", ""))
            if source not in nodes or target not in nodes:
                missing = source if source not in nodes else target
                raise WorkflowGraphError(
                    f"graph.edges[{position}]: joins node {missing!r}, which is not in the graph"
                )
            scope = nodes[source].parent_id
            if nodes[target].parent_id != scope:
                raise WorkflowGraphError(
                    f"graph.edges[{position}]: joins {source!r} and {target!r}, which are not "
                    "inside the same container"
                )
            edge = Edge(
                id=str(raw.get("id") or f"{source}-{target}-{position}"),
                source=source,
                target=target,
                handle=str(raw.get("sourceHandle") or DEFAULT_HANDLE),
            )
            edges_by_scope.setdefault(scope, []).append(edge)

        for node in nodes.values():
            if node.type == human_input.NODE_TYPE:
                _check_human_input(node, edges_by_scope.get(node.parent_id, []))
        starts = [n for n in nodes.values() if n.type == "start" and n.parent_id is None]
        if len(starts) != 1:
            raise WorkflowGraphError(
                "graph: a workflow needs exactly one start node at its top level "
                f"(found {len(starts)})"
            )
        top = _scope(starts[0].id, nodes, None, edges_by_scope.get(None, []))
        scopes: dict[str, Graph] = {}
        for container in (n for n in nodes.values() if n.type in CONTAINERS):
            entry = str(container.data.get("start_node_id") or "")
            children = [n for n in nodes.values() if n.parent_id == container.id]
            if not children:
                raise WorkflowGraphError(
                    f"node {container.id!r} ({container.title}): the {container.type} has no "
                    "nodes inside it"
                )
            if entry not in nodes or nodes[entry].parent_id != container.id:
                entry = _entry(container, children)
            scopes[container.id] = _scope(
                entry, nodes, container.id, edges_by_scope.get(container.id, [])
            )
        return cls(top=top, scopes=scopes, nodes=nodes)


def _node(raw: Any, known: frozenset[str]) -> NodeSpec | None:
    if not isinstance(raw, Mapping):
        raise WorkflowGraphError("graph.nodes: every node must be an object")
    node_id = str(raw.get("id") or "")
    data = raw.get("data")
    if not isinstance(data, Mapping):
        raise WorkflowGraphError(f"node {node_id!r}: has no data")
    kind = str(data.get("type") or "")
    if raw.get("type") == "custom-note" or not kind:
        return None  # a sticky note on the canvas
    title = str(data.get("title") or node_id)
    if not node_id:
        raise WorkflowGraphError(f"node {title!r}: has no id")
    if kind not in known:
        raise WorkflowGraphError(
            f"node {node_id!r} ({title}) has type {kind!r}, which this server does not run "
            f"(it runs: {', '.join(sorted(known))})"
        )
    if kind in ("tool", "agent"):
        try:
            if kind == "tool":
                tool_node.check(data, f"node {node_id!r} ({title})")
            else:
                agent_node.parse(data, f"node {node_id!r} ({title})")
        except ToolError as error:
            raise WorkflowGraphError(str(error)) from None
    strategy = data.get("error_strategy") or None
    if strategy not in (None, FAIL_BRANCH, "default-value"):
        raise WorkflowGraphError(
            f"node {node_id!r} ({title}): error_strategy {strategy!r} is not one of "
            "fail-branch, default-value"
        )
    timeout = data.get("timeout_seconds")
    # Children name their container in `parentId`; older files only in `data`.
    parent = raw.get("parentId")
    if not parent and data.get("isInIteration"):
        parent = data.get("iteration_id")
    if not parent and data.get("isInLoop"):
        parent = data.get("loop_id")
    return NodeSpec(
        id=node_id,
        type=kind,
        title=title,
        data=data,
        parent_id=str(parent) if parent else None,
        retry=RetryConfig.from_dsl(data.get("retry_config")),
        error_strategy=strategy,
        timeout=float(timeout) if isinstance(timeout, int | float) and timeout > 0 else None,
    )


def _check_human_input(node: NodeSpec, edges: list[Edge]) -> None:
    where = f"node {node.id!r} ({node.title})"
    if node.parent_id is not None:
        raise WorkflowGraphError(
            f"{where}: a human-input node cannot be inside an iteration or a loop (the run "
            "pauses at the top level only)"
        )
    try:
        human_input.check(node.data, where, [e.handle for e in edges if e.source == node.id])
    except human_input.HumanInputError as error:
        raise WorkflowGraphError(str(error)) from None


def _entry(container: NodeSpec, children: list[NodeSpec]) -> str:
    helper = "iteration-start" if container.type == "iteration" else "loop-start"
    for child in children:
        if child.type == helper:
            return child.id
    raise WorkflowGraphError(
        f"node {container.id!r} ({container.title}): start_node_id does not name a node inside "
        f"the {container.type}"
    )


def _scope(
    root_id: str, nodes: dict[str, NodeSpec], parent: str | None, edges: list[Edge]
) -> Graph:
    members = {node_id: node for node_id, node in nodes.items() if node.parent_id == parent}
    return Graph(root_id=root_id, nodes=members, edges=edges)
