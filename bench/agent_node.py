"""Workflow agent nodes beside agent-chat apps: the same agent (function calling, the maths
tool, two rounds: a call, then the answer) run as a node of a workflow and as an app's chat
message, in the same server, in the same round.

    .venv/bin/python bench/agent_node.py                 # both modes, 3 rounds, medians (~5 min)
    .venv/bin/python bench/agent_node.py --quick         # 1 round
    .venv/bin/python bench/agent_node.py --mode embedded --json out.json

Everything is started here and stopped at the end, with `bench/sse_streams.py`'s starters
(`conduit serve`; distributed: a fresh PostgreSQL database, Redis, a `conduit worker`) and its
fake upstream (the tests' fake model: it calls the function the message names, then answers
with the result). Three apps: `agent-chat` (the agent as an app), `agent node` (start → agent
node → end) and `llm node` (start → LLM node → end: one model call, the workflow baseline).
Every run streams (agent-chat apps refuse blocking, as in Dify) and is read to its end.

- `one at a time`: 40 runs of each, alternating app by app: the median time from the request
  to the stream's last event.
- `concurrent`: 200 runs of each from 20 clients, one app after the other: runs per second,
  and the server's CPU seconds per run (the server and, distributed, the worker: psutil, their
  children included) — the figure that carries across machines (PostgreSQL's and Redis's own
  CPU is not in it). The ratio of the agent node to the agent-chat app is the agent node's
  overhead over the same agent in a chat. Every run's answer is checked (`runs without their
  answer`: 0); the apps' order turns round by round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.human_input import _cpu
from bench.sse_streams import (
    Stack,
    Target,
    log,
    machine,
    prepare_site,
    revision,
    start_conduit,
    start_upstream,
    stop_target,
    wait_quiet,
)

ONE_AT_A_TIME = 40
CONCURRENT = 200
CLIENTS = 20
QUERY = 'Please compute eval_expression {"expression": "6*7"}'
INSTRUCTION = "You are a careful assistant."
MODEL = {
    "provider": "langgenius/openai_api_compatible/openai_api_compatible",
    "name": "fake",
    "mode": "chat",
    "completion_params": {},
}
MATHS = {"provider_type": "builtin", "provider_id": "maths", "tool_name": "eval_expression"}
START = {
    "id": "start",
    "data": {
        "type": "start",
        "title": "Start",
        "variables": [{"variable": "q", "label": "Q", "type": "paragraph", "required": True}],
    },
}
AGENT = {
    "id": "agent",
    "data": {
        "type": "agent",
        "title": "Agent",
        "agent_strategy_provider_name": "langgenius/agent/agent",
        "agent_strategy_name": "function_calling",
        "agent_parameters": {
            "model": {"type": "constant", "value": MODEL},
            "tools": {
                "type": "constant",
                "value": [
                    {"enabled": True, "type": "builtin", "provider_name": "maths",
                     "tool_name": "eval_expression"}
                ],
            },
            "instruction": {"type": "constant", "value": INSTRUCTION},
            "query": {"type": "constant", "value": "{{#start.q#}}"},
            "maximum_iterations": {"type": "constant", "value": 3},
        },
    },
}  # fmt: skip
LLM = {
    "id": "agent",  # (the same id: the end reads its text)
    "data": {
        "type": "llm",
        "title": "LLM",
        "model": MODEL,
        "prompt_template": [
            {"role": "system", "text": INSTRUCTION},
            {"role": "user", "text": "{{#start.q#}}"},
        ],
    },
}
END = {
    "id": "end",
    "data": {
        "type": "end",
        "title": "End",
        "outputs": [{"variable": "answer", "value_selector": ["agent", "text"]}],
    },
}
EDGES = [
    {"id": "a", "source": "start", "target": "agent"},
    {"id": "b", "source": "agent", "target": "end"},
]


def _console(port: int) -> tuple[httpx.Client, dict[str, str]]:
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}/console/api", timeout=60)
    login = client.post("/login", json={"email": "bench@example.com", "password": "long password"})
    login.raise_for_status()
    return client, {"Authorization": f"Bearer {login.json()['data']['access_token']}"}


def _key(client: httpx.Client, auth: dict[str, str], app_id: str) -> str:
    made = client.post(f"/apps/{app_id}/api-keys", headers=auth)
    made.raise_for_status()
    return str(made.json()["data"]["token"])


def make_apps(port: int) -> dict[str, tuple[str, str]]:
    """Each app's (key, kind): kind `chat` (/chat-messages) or `workflow` (/workflows/run)."""
    client, auth = _console(port)
    apps: dict[str, tuple[str, str]] = {}
    try:
        made = client.post(
            "/apps",
            json={
                "name": "agent-chat",
                "mode": "agent-chat",
                "model_config": {
                    "pre_prompt": INSTRUCTION,
                    "agent_mode": {"enabled": True, "strategy": "function_call",
                                   "max_iteration": 2, "tools": [{**MATHS, "enabled": True}]},
                },
            },
            headers=auth,
        )  # fmt: skip
        made.raise_for_status()
        apps["agent-chat app"] = (_key(client, auth, made.json()["data"]["id"]), "chat")
        for name, middle in (("agent node", AGENT), ("llm node", LLM)):
            dsl = {
                "app": {"name": name, "mode": "workflow"},
                "kind": "app",
                "version": "0.3.1",
                "workflow": {"graph": {"nodes": [START, middle, END], "edges": EDGES}},
            }
            imported = client.post(
                "/apps/imports",
                json={"mode": "yaml-content", "yaml_content": yaml.safe_dump(dsl)},
                headers=auth,
            )
            imported.raise_for_status()
            app_id = imported.json()["app_id"]
            client.post(f"/apps/{app_id}/workflows/publish", headers=auth).raise_for_status()
            apps[name] = (_key(client, auth, app_id), "workflow")
    finally:
        client.close()
    return apps


def _request(kind: str) -> tuple[str, dict[str, Any]]:
    if kind == "chat":
        body = {"inputs": {}, "query": QUERY, "user": "b", "response_mode": "streaming"}
        return "/chat-messages", body
    return "/workflows/run", {"inputs": {"q": QUERY}, "user": "b", "response_mode": "streaming"}


async def one_run(http: httpx.AsyncClient, key: str, kind: str) -> str:
    """One streamed run read to its end: its answer (checked by the caller)."""
    path, body = _request(kind)
    answer: list[str] = []
    outputs: dict[str, Any] = {}
    async with http.stream(
        "POST", path, json=body, headers={"Authorization": f"Bearer {key}"}
    ) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if event.get("event") == "agent_message":
                answer.append(event.get("answer") or "")
            elif event.get("event") == "workflow_finished":
                outputs = event["data"].get("outputs") or {}
    return "".join(answer) if kind == "chat" else str(outputs.get("answer", ""))


def _wanted(name: str) -> str:
    """What every run's answer holds: the tool's result (the agents), the model's (the LLM)."""
    return "You said" if name == "llm node" else "Tool said: 42"


async def measure(
    target: Target, apps: dict[str, tuple[str, str]], round_index: int
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    pids = [target.pid, *target.helpers]
    # The apps' order turns with each round (none always first after the warm-up).
    names = list(apps)
    shift = round_index % len(names)
    apps = {name: apps[name] for name in names[shift:] + names[:shift]}
    wrong = 0
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{target.port}/v1", timeout=120
    ) as http:
        for name, (key, kind) in apps.items():  # warm-up, and the answers checked
            answer = await one_run(http, key, kind)
            assert _wanted(name) in answer, (name, answer)
        times: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(ONE_AT_A_TIME):
            for name, (key, kind) in apps.items():
                began = time.perf_counter()
                answer = await one_run(http, key, kind)
                times[name].append(time.perf_counter() - began)
                wrong += _wanted(name) not in answer
        for name in apps:
            figures[f"{name}: one at a time p50 (ms)"] = statistics.median(times[name]) * 1000
        for name, (key, kind) in apps.items():
            wait_quiet(25, 30)
            queue = list(range(CONCURRENT))

            async def client(
                name: str = name, key: str = key, kind: str = kind, queue: list[int] = queue
            ) -> int:
                missed = 0
                while queue:
                    queue.pop()
                    missed += _wanted(name) not in await one_run(http, key, kind)
                return missed

            cpu = _cpu(pids)
            began = time.perf_counter()
            wrong += sum(await asyncio.gather(*(client() for _ in range(CLIENTS))))
            took = time.perf_counter() - began
            used = _cpu(pids) - cpu
            figures[f"{name}: runs/s ({CLIENTS} clients)"] = CONCURRENT / took
            figures[f"{name}: server CPU ms per run"] = used / CONCURRENT * 1000
    figures["runs without their answer"] = wrong
    base = figures["agent-chat app: server CPU ms per run"]
    figures["agent node / agent-chat app, CPU per run"] = (
        figures["agent node: server CPU ms per run"] / base
    )
    return figures


def run_mode(stack: Stack, mode: str, round_index: int) -> dict[str, Any]:
    upstream = start_upstream(stack)
    site = prepare_site(stack, mode, upstream)
    target = start_conduit(stack, site, upstream)
    try:
        apps = make_apps(target.port)
        wait_quiet(25, 60)
        log(f"{mode}: {ONE_AT_A_TIME} runs of each one at a time, then {CONCURRENT} concurrent")
        return asyncio.run(measure(target, apps, round_index))
    finally:
        stop_target(stack, target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--mode", choices=["embedded", "distributed", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="1 round instead of 3")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    modes = ["embedded", "distributed"] if args.mode == "both" else [args.mode]
    rounds = 1 if args.quick else 3
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for round_index in range(rounds):
        for mode in modes:
            log(f"round {round_index + 1}/{rounds}: {mode}")
            stack = Stack(keep=False)
            try:
                results[mode].append(run_mode(stack, mode, round_index))
            finally:
                stack.close()
    print(f"\nagent node, code {revision()}, {machine()}, {rounds} round(s), medians\n")
    print("| figure | " + " | ".join(modes) + " |")
    print("|---|" + "---|" * len(modes))
    for key in results[modes[0]][0]:
        cells = [f"{statistics.median(r[key] for r in results[mode]):,.2f}" for mode in modes]
        print(f"| {key} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
