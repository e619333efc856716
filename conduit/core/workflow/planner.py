"""What runs next in one scope of a graph: pure bookkeeping, no I/O, no clock.

Every edge is pending until its source ends; then it is *taken* (the source left through its
handle) or *skipped*. A node is ready once every incoming edge is resolved and at least one
was taken — so a join waits for all its branches, and a branch that was not chosen does not
hold it up. A node whose incoming edges were all skipped is skipped, and so are its outgoing
edges, and so on down the graph: a whole unchosen path is skipped at the moment its branch is
decided, which is also what lets an answer further down start streaming early (`certain`).

The engine asks `start()` for the first ready nodes and, as each node ends, `finish(node,
handles)` for the nodes that became ready and those that were skipped.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass, field

from conduit.core.workflow.graph import BRANCHING, FAIL_BRANCH, Graph


class EdgeState(enum.Enum):
    PENDING = "pending"
    TAKEN = "taken"
    SKIPPED = "skipped"


class NodeState(enum.Enum):
    WAITING = "waiting"
    READY = "ready"
    DONE = "done"
    SKIPPED = "skipped"


@dataclass
class Step:
    ready: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class Planner:
    def __init__(self, graph: Graph) -> None:
        self._graph = graph
        self._edges = {edge.id: EdgeState.PENDING for edge in graph.edges}
        self._nodes = {node_id: NodeState.WAITING for node_id in graph.nodes}
        # The nodes whose decision can skip a node: its ancestors that choose among edges.
        self._deciders = deciders(graph)

    def state(self, node_id: str) -> NodeState:
        return self._nodes[node_id]

    def start(self) -> list[str]:
        self._nodes[self._graph.root_id] = NodeState.READY
        return [self._graph.root_id]

    def finish(self, node_id: str, handles: Collection[str]) -> Step:
        """`node_id` ended, leaving through `handles`: the nodes this made ready or skipped."""
        self._nodes[node_id] = NodeState.DONE
        step = Step()
        self._resolve(node_id, handles, step)
        return step

    def certain(self, node_id: str) -> bool:
        """Whether `node_id` will run (unless something fails): every branch above it has
        decided and it was not skipped."""
        if self._nodes[node_id] is NodeState.SKIPPED:
            return False
        return all(
            self._nodes[decider] in (NodeState.DONE, NodeState.SKIPPED)
            for decider in self._deciders[node_id]
        )

    def _resolve(self, node_id: str, handles: Collection[str], step: Step) -> None:
        # A worklist, not recursion: a long skipped chain must not hit the recursion limit.
        work: list[tuple[str, Collection[str]]] = [(node_id, handles)]
        while work:
            source, taken = work.pop()
            for edge in self._graph.outgoing[source]:
                self._edges[edge.id] = (
                    EdgeState.TAKEN if edge.handle in taken else EdgeState.SKIPPED
                )
                target = edge.target
                if self._nodes[target] is not NodeState.WAITING:
                    continue
                states = [self._edges[e.id] for e in self._graph.incoming[target]]
                if EdgeState.PENDING in states:
                    continue
                if EdgeState.TAKEN in states:
                    self._nodes[target] = NodeState.READY
                    step.ready.append(target)
                else:
                    self._nodes[target] = NodeState.SKIPPED
                    step.skipped.append(target)
                    work.append((target, ()))


def deciders(graph: Graph) -> dict[str, frozenset[str]]:
    """For each node, its ancestors that choose among their edges (whose decision can skip
    it). Computed once per graph and kept on it (every iteration item plans the same scope),
    in topological order, each node's from its sources': linear for the usual graph, where
    walking every node's ancestors was quadratic in a chain's length."""
    if graph.deciders is not None:
        return graph.deciders
    found: dict[str, frozenset[str]] = {}
    waiting = {node_id: len(graph.incoming[node_id]) for node_id in graph.nodes}
    ready = [node_id for node_id, count in waiting.items() if count == 0]
    while ready:
        node_id = ready.pop()
        above: set[str] = set()
        for edge in graph.incoming[node_id]:
            above |= found.get(edge.source, frozenset())
            if _decides(graph, edge.source):
                above.add(edge.source)
        found[node_id] = frozenset(above)
        for edge in graph.outgoing[node_id]:
            waiting[edge.target] -= 1
            if waiting[edge.target] == 0:
                ready.append(edge.target)
    for node_id in graph.nodes:  # on a cycle (not a DAG): the plain walk
        if node_id not in found:
            found[node_id] = frozenset(a for a in graph.ancestors(node_id) if _decides(graph, a))
    graph.deciders = found
    return found


def _decides(graph: Graph, node_id: str) -> bool:
    node = graph.nodes[node_id]
    return node.type in BRANCHING or node.error_strategy == FAIL_BRANCH
