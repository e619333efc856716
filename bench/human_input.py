"""Human-input pauses: what a pause and a resume cost, what waiting costs, and a burst of answers.

    .venv/bin/python bench/human_input.py                 # both modes, 3 rounds, medians (~4 min)
    .venv/bin/python bench/human_input.py --quick         # 1 round
    .venv/bin/python bench/human_input.py --mode embedded --json out.json

Everything is started here and stopped at the end, with `bench/sse_streams.py`'s starters:
`conduit serve` (embedded: SQLite and the in-process worker; distributed: a fresh PostgreSQL
database, Redis, a `conduit worker`). Two published workflow apps: `plain` (start → template →
end) and `approval` (start → human-input → template → end). Scenarios, per mode:

- `pause`: one at a time, 30 times: a blocking run of `approval` until its paused body (the
  form's token), then the answer (`POST /v1/form/human_input/{token}`) and the run's events
  (`GET /v1/workflow/{id}/events`) until `workflow_finished`. Reported: the blocking run to
  its pause, the answer's 200, and the answer → `workflow_finished` (the resumed execution:
  through the outbox and the `generation` queue) — beside a blocking run of `plain`, the same
  graph without the pause, measured the same way in the same round.
- `waiting`: 300 runs paused at once, then 20 s of nothing: the server's (and worker's) CPU
  seconds over that window, against the same window with no run paused. A paused run is rows
  only; the sweep reads before it writes.
- `answers`: the 300 paused runs answered by 20 concurrent clients: answers per second, and
  the time until every resumed run ended `succeeded` (none lost, none run twice: the number of
  `workflow_finished` each run's events show).
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
import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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

PAUSES = 30
WAITING = 300
IDLE_SECONDS = 20.0
ANSWER_CLIENTS = 20

START = {
    "id": "start",
    "data": {
        "type": "start",
        "title": "Start",
        "variables": [{"variable": "doc", "label": "Doc", "type": "text-input", "required": True}],
    },
}
TEMPLATE = {
    "id": "tpl",
    "data": {
        "type": "template-transform",
        "title": "Template",
        "template": "done: {{ doc }}",
        "variables": [{"variable": "doc", "value_selector": ["start", "doc"]}],
    },
}
END = {
    "id": "end",
    "data": {
        "type": "end",
        "title": "End",
        "outputs": [{"variable": "result", "value_selector": ["tpl", "output"]}],
    },
}
ASK = {
    "id": "ask",
    "data": {
        "type": "human-input",
        "title": "Review",
        "form_content": "Publish {{#start.doc#}}?",
        "inputs": [{"type": "paragraph", "output_variable_name": "note"}],
        "user_actions": [{"id": "approve", "title": "Approve"}],
        "timeout": 1,
        "timeout_unit": "day",
    },
}


def _edge(source: str, target: str, handle: str = "source") -> dict[str, str]:
    return {"id": f"{source}-{target}", "source": source, "target": target, "sourceHandle": handle}


PLAIN = {"nodes": [START, TEMPLATE, END], "edges": [_edge("start", "tpl"), _edge("tpl", "end")]}
APPROVAL = {
    "nodes": [START, ASK, TEMPLATE, END],
    "edges": [_edge("start", "ask"), _edge("ask", "tpl", "approve"), _edge("tpl", "end")],
}


def _publish(port: int, name: str, graph: dict[str, Any]) -> str:
    """A workflow app of `graph`, imported as DSL, published; its app key."""
    base = f"http://127.0.0.1:{port}/console/api"
    with httpx.Client(timeout=60) as client:
        login = client.post(
            f"{base}/login", json={"email": "bench@example.com", "password": "long password"}
        )
        login.raise_for_status()
        auth = {"Authorization": f"Bearer {login.json()['data']['access_token']}"}
        dsl = {"app": {"name": name, "mode": "workflow"}, "kind": "app", "version": "0.3.1"}
        dsl["workflow"] = {"graph": graph}
        made = client.post(
            f"{base}/apps/imports",
            json={"mode": "yaml-content", "yaml_content": yaml.safe_dump(dsl)},
            headers=auth,
        )
        made.raise_for_status()
        app_id = made.json()["app_id"]
        client.post(f"{base}/apps/{app_id}/workflows/publish", headers=auth).raise_for_status()
        key = client.post(f"{base}/apps/{app_id}/api-keys", headers=auth)
        key.raise_for_status()
        return str(key.json()["data"]["token"])


def _client(port: int, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"http://127.0.0.1:{port}/v1",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def _events(client: httpx.Client, run_id: str) -> list[str]:
    with client.stream("GET", f"/workflow/{run_id}/events", params={"user": "b"}) as r:
        return [
            json.loads(line[6:]).get("event", "")
            for line in r.iter_lines()
            if line.startswith("data: ")
        ]


def _until_finished(client: httpx.Client, run_id: str, most: float = 60.0) -> list[str]:
    deadline = time.monotonic() + most
    while True:
        seen = _events(client, run_id)
        if "workflow_finished" in seen or time.monotonic() > deadline:
            return seen
        time.sleep(0.005)


def _run(client: httpx.Client, doc: str) -> dict[str, Any]:
    response = client.post("/workflows/run", json={"inputs": {"doc": doc}, "user": "b"})
    response.raise_for_status()
    return dict(response.json())


def _answer(client: httpx.Client, token: str) -> None:
    response = client.post(
        f"/form/human_input/{token}",
        json={"inputs": {"note": "ok"}, "action": "approve", "user": "b"},
    )
    response.raise_for_status()


def pauses(port: int, plain_key: str, approval_key: str) -> dict[str, Any]:
    plain, approval = _client(port, plain_key), _client(port, approval_key)
    to_pause, answered, resumed, baseline = [], [], [], []
    try:
        for index in range(PAUSES + 2):  # two warm-up rounds, discarded
            began = time.perf_counter()
            body = _run(plain, f"p{index}")
            plain_s = time.perf_counter() - began
            assert body["data"]["status"] == "succeeded", body
            began = time.perf_counter()
            paused = _run(approval, f"a{index}")
            pause_s = time.perf_counter() - began
            assert paused["data"]["status"] == "paused", paused
            token = paused["data"]["reasons"][0]["form_token"]
            began = time.perf_counter()
            _answer(approval, token)
            answer_s = time.perf_counter() - began
            seen = _until_finished(approval, paused["workflow_run_id"])
            resume_s = time.perf_counter() - began
            assert seen.count("workflow_finished") == 1, seen
            if index >= 2:
                baseline.append(plain_s)
                to_pause.append(pause_s)
                answered.append(answer_s)
                resumed.append(resume_s)
    finally:
        plain.close()
        approval.close()

    def ms(values: list[float], pct: float = 50) -> float:
        ordered = sorted(values)
        return 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]

    return {
        "plain_ms": ms(baseline),
        "to_pause_ms": ms(to_pause),
        "answer_ms": ms(answered),
        "answer_to_finished_ms": ms(resumed),
        "answer_to_finished_p90_ms": ms(resumed, 90),
    }


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            for each in [process, *process.children(recursive=True)]:
                times = each.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue
    return total


def waiting_and_answers(target: Target, approval_key: str) -> dict[str, Any]:
    pids = [target.pid, *target.helpers]
    client = _client(target.port, approval_key)
    figures: dict[str, Any] = {}
    try:
        time.sleep(2)
        before = _cpu(pids)
        time.sleep(IDLE_SECONDS)
        figures["idle_cpu_s_none"] = _cpu(pids) - before
        paused = [_run(client, f"w{index}") for index in range(WAITING)]
        assert all(p["data"]["status"] == "paused" for p in paused)
        time.sleep(2)
        before = _cpu(pids)
        time.sleep(IDLE_SECONDS)
        figures["idle_cpu_s_paused"] = _cpu(pids) - before
    finally:
        client.close()

    async def answer_all() -> float:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{target.port}/v1",
            headers={"Authorization": f"Bearer {approval_key}"},
            timeout=60,
        ) as http:
            queue = [p["data"]["reasons"][0]["form_token"] for p in paused]
            began = time.perf_counter()

            async def worker() -> None:
                while queue:
                    token = queue.pop()
                    response = await http.post(
                        f"/form/human_input/{token}",
                        json={"inputs": {"note": "ok"}, "action": "approve", "user": "b"},
                    )
                    response.raise_for_status()

            await asyncio.gather(*(worker() for _ in range(ANSWER_CLIENTS)))
            return time.perf_counter() - began

    began = time.perf_counter()
    took = asyncio.run(answer_all())
    figures["answers_per_s"] = WAITING / took
    with _client(target.port, approval_key) as client:
        finished = [_until_finished(client, p["workflow_run_id"], most=300) for p in paused]
    figures["drain_s"] = time.perf_counter() - began
    figures["lost"] = sum(1 for seen in finished if "workflow_finished" not in seen)
    figures["duplicated"] = sum(1 for seen in finished if seen.count("workflow_finished") > 1)
    return figures


def run_mode(stack: Stack, mode: str) -> dict[str, Any]:
    upstream = start_upstream(stack)
    site = prepare_site(stack, mode, upstream)
    target = start_conduit(stack, site, upstream)
    try:
        plain_key = _publish(target.port, "plain", PLAIN)
        approval_key = _publish(target.port, "approval", APPROVAL)
        wait_quiet(25, 60)
        log(f"{mode}: pause ({PAUSES} one at a time)")
        figures = pauses(target.port, plain_key, approval_key)
        log(f"{mode}: waiting ({WAITING} paused, {IDLE_SECONDS:g} s) and answers")
        figures.update(waiting_and_answers(target, approval_key))
        return figures
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
            stack = Stack(keep=False)  # (a site's home is new each time)
            try:
                results[mode].append(run_mode(stack, mode))
            finally:
                stack.close()
    print(f"\nhuman input, code {revision()}, {machine()}, {rounds} round(s), medians\n")
    keys = [
        ("plain_ms", "plain blocking run (ms)"),
        ("to_pause_ms", "blocking run to its pause (ms)"),
        ("answer_ms", "answer's 200 (ms)"),
        ("answer_to_finished_ms", "answer → workflow_finished p50 (ms)"),
        ("answer_to_finished_p90_ms", "answer → workflow_finished p90 (ms)"),
        ("idle_cpu_s_none", f"CPU s over {IDLE_SECONDS:g} s idle, none paused"),
        ("idle_cpu_s_paused", f"CPU s over {IDLE_SECONDS:g} s idle, {WAITING} paused"),
        ("answers_per_s", f"answers/s ({ANSWER_CLIENTS} clients)"),
        ("drain_s", f"{WAITING} answers → every run finished (s)"),
        ("lost", "lost"),
        ("duplicated", "duplicated"),
    ]
    print("| figure | " + " | ".join(modes) + " |")
    print("|---|" + "---|" * len(modes))
    for key, label in keys:
        cells = []
        for mode in modes:
            value = statistics.median(r[key] for r in results[mode])
            cells.append(f"{value:,.2f}" if isinstance(value, float) else str(value))
        print(f"| {label} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
