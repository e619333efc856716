"""The workflow engine's overhead per node, its parallel branches and its stop, beside LangGraph
running the same graph shapes in the same process, on the same event loop, in the same run.

    .venv/bin/python bench/workflow.py              # 7 timed runs of each scenario per engine
    .venv/bin/python bench/workflow.py --quick      # 3 timed runs
    .venv/bin/python bench/workflow.py --profile    # + cProfile of one Conduit chain run

Scenarios (every graph has a start node and an end node around its N middle nodes, so both
engines execute N + 2 node functions):

- `chain`: 1,000 no-op nodes one after the other;
- `fan-out`: 100 no-op nodes in parallel between the start and a join (the end);
- `parallel 3 x 1 s`: 3 branches that each `asyncio.sleep(1)`, joined by the end;
- `stop`: 10 branches that each sleep 30 s; once all 10 have started, the run's task is
  cancelled: the figure is cancel -> task done, and every branch must have reported `stopped`
  (Conduit: its `NodeFinished`; LangGraph: the node's coroutine saw the cancellation).

Conduit builds each graph from Dify DSL dicts (`WorkflowGraph.parse`, once per scenario) and
runs it with `run_scope` in a fresh `RunContext` each time; its bench-only node types `noop`
and `sleep` sit beside the real `start` and `end`, and the event sink appends to a list.
LangGraph (`bench/langgraph.lock`, installed into `.venv/bench-langgraph` on first use and put
last on `sys.path`, so Conduit's own pinned packages win) compiles a `StateGraph` of async
nodes once per scenario and runs it with `ainvoke`: each no-op node adds 1 to a state key with
an `operator.add` reducer (so parallel writes merge), the fan-out joins on all 100 branches.

Fairness: one process and one uvloop loop for both; one warm-up run of every scenario per
engine, discarded; then the engines alternate run by run (Conduit, LangGraph, Conduit, ...)
so drift on a shared machine hits both; `gc.collect()` before every timed run. The per-node
figures are wall time / nodes and process CPU time (`time.process_time()`) / nodes of the whole
run; the graph's parse or compile is not timed, the engine's per-run set-up is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import importlib
import importlib.metadata
import io
import operator
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sse_streams import _cpu_pressure, machine, revision, wait_quiet
from conduit.core.workflow.engine import NodeCall, NodeResult, RunContext, RunLimits, run_scope
from conduit.core.workflow.events import NodeFinished, NodeStarted, WorkflowEvent
from conduit.core.workflow.graph import NODE_TYPES, WorkflowGraph
from conduit.core.workflow.nodes import basic
from conduit.core.workflow.planner import Planner
from conduit.core.workflow.variables import VariablePool

ROOT = Path(__file__).resolve().parents[1]
LANGGRAPH_LOCK = ROOT / "bench" / "langgraph.lock"
LANGGRAPH_DIR = ROOT / ".venv" / "bench-langgraph"

CHAIN = 1000
FAN_OUT = 100
PARALLEL, PARALLEL_SECONDS = 3, 1.0
STOP_BRANCHES, STOP_SECONDS = 10, 30.0
PER_NODE_TARGET_MS = 0.5
PARALLEL_TARGET_S = 1.05
STOP_TARGET_S = 1.0
ENGINES = ("Conduit", "LangGraph")


# --- LangGraph: installed for the benchmark only ------------------------------------------------


def install_langgraph() -> None:
    """Install `bench/langgraph.lock` into its own directory (again when the lock changed) and
    append it to `sys.path`: a package Conduit also has is imported from Conduit's environment."""
    marker = LANGGRAPH_DIR / ".installed"
    lock = LANGGRAPH_LOCK.read_bytes()
    if not marker.exists() or marker.read_bytes() != lock:
        print(f"installing {LANGGRAPH_LOCK.name} into {LANGGRAPH_DIR}", file=sys.stderr)
        shutil.rmtree(LANGGRAPH_DIR, ignore_errors=True)
        uv = Path(sys.executable).parent / "uv"
        subprocess.run(
            [
                str(uv),
                "pip",
                "install",
                "-q",
                "--python",
                sys.executable,
                "--target",
                str(LANGGRAPH_DIR),
                "-r",
                str(LANGGRAPH_LOCK),
            ],
            check=True,
        )
        marker.write_bytes(lock)
    if str(LANGGRAPH_DIR) not in sys.path:
        sys.path.append(str(LANGGRAPH_DIR))
    importlib.invalidate_caches()


def _versions(paths: list[str]) -> dict[str, str]:
    return {
        re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower(): dist.version
        for dist in importlib.metadata.distributions(path=paths)
    }


def langgraph_environment() -> str:
    """LangGraph's version and how its dependencies meet Conduit's (Conduit's copy is the one
    imported where both have a package)."""
    theirs = _versions([str(LANGGRAPH_DIR)])
    ours = _versions([p for p in sys.path if p != str(LANGGRAPH_DIR)])
    shared = sorted(set(theirs) & set(ours))
    differ = [
        f"{name} {theirs[name]} (Conduit's {ours[name]} is used)"
        for name in shared
        if theirs[name] != ours[name]
    ]
    pydantic = importlib.import_module("pydantic")
    return (
        f"langgraph {theirs.get('langgraph')}, langchain-core {theirs.get('langchain-core')} "
        f"from {LANGGRAPH_DIR.relative_to(ROOT)}; {len(shared)} of its "
        f"{len(theirs)} packages are also Conduit's, "
        + (f"versions differ: {', '.join(differ)}" if differ else "all at the same versions")
        + f"; pydantic {pydantic.VERSION} imported from "
        + str(Path(str(pydantic.__file__)).parent.parent.relative_to(ROOT))
    )


class LangGraphState(TypedDict):
    visits: Annotated[int, operator.add]


async def _lg_noop(state: LangGraphState) -> dict[str, int]:
    return {"visits": 1}


@dataclass
class Probe:
    """Which branches started and which saw the cancellation (the stop scenario)."""

    expected: int
    started: int = 0
    stopped: int = 0
    all_started: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        self.started += 1
        if self.started == self.expected:
            self.all_started.set()


def _lg_sleeper(
    seconds: float, probe: Probe | None
) -> Callable[[LangGraphState], Awaitable[dict[str, int]]]:
    async def sleep(state: LangGraphState) -> dict[str, int]:
        if probe is not None:
            probe.start()
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            if probe is not None:
                probe.stopped += 1
            raise
        return {"visits": 1}

    return sleep


def langgraph_graph(
    shape: str, width: int, seconds: float = 0.0, probe: Probe | None = None
) -> Any:
    """A compiled `StateGraph`: start -> `width` nodes (a chain, or parallel branches) -> end."""
    from langgraph.graph import END, START, StateGraph

    builder = StateGraph(LangGraphState)
    builder.add_node("start", _lg_noop)
    builder.add_node("end", _lg_noop)
    builder.add_edge(START, "start")
    builder.add_edge("end", END)
    names = [f"n{i}" for i in range(1, width + 1)]
    for name in names:
        builder.add_node(name, _lg_sleeper(seconds, probe) if seconds else _lg_noop)
    if shape == "chain":
        for source, target in zip(["start", *names], [*names, "end"], strict=True):
            builder.add_edge(source, target)
    else:
        for name in names:
            builder.add_edge("start", name)
        builder.add_edge(names, "end")  # a join: "end" waits for every branch
    return builder.compile()


# --- Conduit -------------------------------------------------------------------------------------

_NOOP = NodeResult(outputs={})


async def noop_node(call: NodeCall) -> NodeResult:
    return _NOOP


async def sleep_node(call: NodeCall) -> NodeResult:
    await asyncio.sleep(float(call.spec.data["seconds"]))
    return _NOOP


CONDUIT_TYPES = NODE_TYPES | {"noop", "sleep"}
CONDUIT_NODES = {"start": basic.start, "end": basic.end, "noop": noop_node, "sleep": sleep_node}
CONDUIT_LIMITS = RunLimits(max_steps=10 * CHAIN)


def conduit_graph(shape: str, width: int, seconds: float = 0.0) -> WorkflowGraph:
    """The DSL graph start -> `width` nodes (a chain, or parallel branches) -> end, parsed."""

    def node(node_id: str, kind: str, **data: Any) -> dict[str, Any]:
        return {"id": node_id, "data": {"type": kind, "title": node_id, **data}}

    def edge(source: str, target: str) -> dict[str, Any]:
        return {"id": f"{source}-{target}", "source": source, "target": target}

    names = [f"n{i}" for i in range(1, width + 1)]
    middle = [node(n, "sleep", seconds=seconds) if seconds else node(n, "noop") for n in names]
    nodes = [node("start", "start"), *middle, node("end", "end", outputs=[])]
    if shape == "chain":
        pairs = zip(["start", *names], [*names, "end"], strict=True)
        edges = [edge(s, t) for s, t in pairs]
    else:
        edges = [edge("start", n) for n in names] + [edge(n, "end") for n in names]
    return WorkflowGraph.parse({"nodes": nodes, "edges": edges}, node_types=CONDUIT_TYPES)


def _finished(events: list[WorkflowEvent], status: str) -> int:
    return sum(1 for e in events if isinstance(e, NodeFinished) and e.execution.status == status)


# --- scenarios -----------------------------------------------------------------------------------


@dataclass
class Sample:
    wall: float  # seconds: the whole run, or cancel -> done for the stop
    cpu: float  # process CPU seconds of the whole run
    ok: bool
    note: str = ""


@dataclass
class Scenario:
    name: str
    shape: str
    width: int
    seconds: float = 0.0
    stop: bool = False

    @property
    def nodes(self) -> int:
        return self.width + 2

    @property
    def per_node(self) -> bool:
        return not self.seconds


SCENARIOS = [
    Scenario("chain of 1,000 no-op nodes", "chain", CHAIN),
    Scenario("fan-out of 100 no-op nodes", "fan", FAN_OUT),
    Scenario(f"{PARALLEL} x {PARALLEL_SECONDS:g} s in parallel", "fan", PARALLEL, PARALLEL_SECONDS),
    Scenario(
        f"stop {STOP_BRANCHES} x sleep {STOP_SECONDS:g} s", "fan", STOP_BRANCHES, STOP_SECONDS, True
    ),
]


async def _timed(run: Awaitable[Any]) -> tuple[Any, float, float]:
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    result = await run
    return result, time.perf_counter() - wall, time.process_time() - cpu


async def _cancel_when(task: asyncio.Task[Any], started: asyncio.Event) -> float:
    """Cancel `task` once `started` is set; seconds from the cancel to the task's end."""
    await started.wait()
    cancelled = time.perf_counter()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return time.perf_counter() - cancelled


async def conduit_sample(scenario: Scenario, graph: WorkflowGraph) -> Sample:
    events: list[WorkflowEvent] = []
    if not scenario.stop:
        context = RunContext(
            graph=graph, nodes=CONDUIT_NODES, emit=events.append, limits=CONDUIT_LIMITS
        )
        _, wall, cpu = await _timed(run_scope(context, graph.top, VariablePool()))
        succeeded = _finished(events, "succeeded")
        return Sample(wall, cpu, succeeded == scenario.nodes, f"{succeeded} succeeded")
    probe = Probe(scenario.width)

    def sink(event: WorkflowEvent) -> None:
        events.append(event)
        if isinstance(event, NodeStarted) and event.execution.node_type == "sleep":
            probe.start()

    context = RunContext(graph=graph, nodes=CONDUIT_NODES, emit=sink, limits=CONDUIT_LIMITS)
    task = asyncio.create_task(run_scope(context, graph.top, VariablePool()))
    stopped_in, _, cpu = await _timed(_cancel_when(task, probe.all_started))
    stopped = _finished(events, "stopped")
    return Sample(stopped_in, cpu, stopped == scenario.width, f"{stopped} stopped")


async def langgraph_sample(scenario: Scenario, graph: Any, probe: Probe | None) -> Sample:
    config = {"recursion_limit": scenario.nodes + 10}
    if probe is None:
        state, wall, cpu = await _timed(graph.ainvoke({"visits": 0}, config))
        visits = state["visits"]
        return Sample(wall, cpu, visits == scenario.nodes, f"{visits} visits")
    probe.started = probe.stopped = 0
    probe.all_started = asyncio.Event()
    task = asyncio.create_task(graph.ainvoke({"visits": 0}, config))
    stopped_in, _, cpu = await _timed(_cancel_when(task, probe.all_started))
    return Sample(stopped_in, cpu, probe.stopped == scenario.width, f"{probe.stopped} stopped")


Runner = Callable[[], Awaitable[Sample]]


def runners(scenario: Scenario) -> dict[str, Runner]:
    """Each engine's run of `scenario`, its graph built once."""
    cgraph = conduit_graph(scenario.shape, scenario.width, scenario.seconds)
    probe = Probe(scenario.width) if scenario.stop else None
    lgraph = langgraph_graph(scenario.shape, scenario.width, scenario.seconds, probe)
    return {
        "Conduit": lambda: conduit_sample(scenario, cgraph),
        "LangGraph": lambda: langgraph_sample(scenario, lgraph, probe),
    }


async def measure(runs: int) -> dict[str, dict[str, list[Sample]]]:
    """scenario -> engine -> timed samples (the warm-up runs are not among them)."""
    results: dict[str, dict[str, list[Sample]]] = {}
    for scenario in SCENARIOS:
        by_engine = runners(scenario)
        for run in by_engine.values():  # warm-up, discarded
            await run()
        samples: dict[str, list[Sample]] = {engine: [] for engine in ENGINES}
        for index in range(runs):
            for engine in ENGINES:
                sample = await by_engine[engine]()
                samples[engine].append(sample)
                print(
                    f"  {scenario.name} | {engine} | run {index + 1}: {sample.wall * 1000:.1f} ms"
                    f", CPU {sample.cpu * 1000:.1f} ms, {sample.note}",
                    file=sys.stderr,
                )
        results[scenario.name] = samples
    return results


async def profile_chain() -> str:
    """cProfile of one Conduit `run_scope` of the chain (after a warm-up): the top functions."""
    graph = conduit_graph("chain", CHAIN)
    await conduit_sample(SCENARIOS[0], graph)
    events: list[WorkflowEvent] = []
    context = RunContext(
        graph=graph, nodes=CONDUIT_NODES, emit=events.append, limits=CONDUIT_LIMITS
    )
    gc.collect()
    profiler = cProfile.Profile()
    profiler.enable()
    await run_scope(context, graph.top, VariablePool())
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(12)
    return out.getvalue()


def planner_setup() -> str:
    """What building the run's `Planner` costs alone, per no-op shape (inside each run's
    figure): the best of 5."""
    parts = []
    for scenario in SCENARIOS:
        if scenario.per_node:
            top = conduit_graph(scenario.shape, scenario.width).top
            best = float("inf")
            for _ in range(5):
                started = time.perf_counter()
                Planner(top)
                best = min(best, time.perf_counter() - started)
            parts.append(f"{_ms(best)} ms for the {scenario.shape}")
    return ", ".join(parts)


# --- the table -----------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}" if seconds >= 0.01 else f"{seconds * 1000:.3f}"


def table(results: dict[str, dict[str, list[Sample]]]) -> list[str]:
    """The Markdown table: medians, per-node figures, targets."""
    lines = [
        "| scenario | engine | nodes | wall ms, median (min–max) | overhead ms/node "
        "| CPU ms/node | target | met |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for scenario in SCENARIOS:
        samples = results[scenario.name]
        wall = {e: statistics.median(s.wall for s in samples[e]) for e in ENGINES}
        cpu = {e: statistics.median(s.cpu for s in samples[e]) / scenario.nodes for e in ENGINES}
        per_node = {e: wall[e] / scenario.nodes for e in ENGINES}
        for engine in ENGINES:
            ok = all(s.ok for s in samples[engine])
            if scenario.stop:
                target, met = (
                    f"≤ {STOP_TARGET_S:g} s, every branch stopped",
                    (wall[engine] <= STOP_TARGET_S and ok),
                )
            elif scenario.seconds:
                target, met = f"≤ {PARALLEL_TARGET_S:g} s", wall[engine] <= PARALLEL_TARGET_S and ok
            elif engine == "Conduit":
                target = f"≤ {PER_NODE_TARGET_MS:g} ms/node, < LangGraph's"
                met = ok and per_node[engine] * 1000 <= PER_NODE_TARGET_MS
                met = met and per_node[engine] < per_node["LangGraph"]
            else:
                target, met = "(the reference)", ok
            walls = [s.wall for s in samples[engine]]
            lines.append(
                f"| {scenario.name} | {engine} | {scenario.nodes:,} | {_ms(wall[engine])} "
                f"({_ms(min(walls))}–{_ms(max(walls))}) "
                f"| {_ms(per_node[engine]) if scenario.per_node else '—'} "
                f"| {cpu[engine] * 1000:.3f} | {target} | {'yes' if met else 'no'}"
                f"{'' if ok else ' (a run went wrong)'} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="3 timed runs instead of 7")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per engine")
    parser.add_argument("--profile", action="store_true", help="cProfile a Conduit chain run")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 7)

    install_langgraph()
    os.environ.setdefault("LANGSMITH_TRACING", "false")
    importlib.import_module("langgraph.graph")
    environment = langgraph_environment()
    wait_quiet(25.0, 120.0)
    code, before = revision(), machine()
    pressure = _cpu_pressure()
    started = time.monotonic()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        results = runner.run(measure(runs))
        profile = runner.run(profile_chain()) if args.profile else ""
    elapsed = time.monotonic() - started
    waited = _cpu_pressure()
    lines = table(results)
    failed = [s.note for by in results.values() for ss in by.values() for s in ss if not s.ok]

    print(f"\nMachine: {before}; code: {code}")
    print(f"LangGraph: {environment}.")
    print(
        f"Medians of {runs} timed run(s) per engine after one warm-up each, engines alternating "
        f"run by run, one process, one uvloop {importlib.metadata.version('uvloop')} loop"
        + (
            f"; CPU pressure (PSI 'some') {100 * (waited - pressure) / elapsed:.0f} % "
            f"over the {elapsed:.0f} s"
            if pressure is not None and waited is not None
            else ""
        )
        + ".\n"
    )
    print("\n".join(lines))
    print(f"\nConduit's `Planner(graph.top)` alone (built by every run): {planner_setup()}.")
    if failed:
        print(f"\n{len(failed)} run(s) went wrong: {', '.join(failed[:5])}")
    if profile:
        print("\nConduit, one chain run under cProfile:\n" + profile)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
