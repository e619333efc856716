"""Async runs: submits per second and their latency, submit → callback latency, and a burst of
submits against one and two workers.

    .venv/bin/python bench/async_runs.py                  # 3 runs, both modes, medians (~12 min)
    .venv/bin/python bench/async_runs.py --quick          # 1 run, shorter windows (~4 min)
    .venv/bin/python bench/async_runs.py --mode distributed --burst 2000 --json out.json

Everything is started here and stopped at the end, as in `bench/sse_streams.py` (whose stack,
upstream and Conduit starters this reuses): the fake upstream, `conduit serve` (embedded:
SQLite and the in-process worker; distributed: a fresh PostgreSQL database, Redis dbs 13 and 14,
`conduit worker` processes), and a callback receiver in this process (aiohttp on its own thread:
it records when each task's callback arrived, and how often). Loopback callbacks are allowed by
`CONDUIT_WEBHOOK_ALLOWED_NETWORKS=127.0.0.0/8`.

Scenarios, per mode:

- `submit`: 100 submitters, each submitting one async run per second (100 submits/s offered,
  open loop: a slow answer does not slow the offer), for the window; the 202's latency p50 /
  p99 and the 202s per second. Then `submit-max`: 100 submitters in a closed loop (the next
  submit as soon as the last 202 came): the most 202s per second, with their latency. Every
  run here is a 3-token answer at pace 0 with a callback, so the worker's runs and the
  callbacks share the machine with the submits, as they would.
- `submit-alone` (distributed): `submit` again with the `conduit worker` processes paused
  (SIGSTOP; SIGCONT after the window): the server, PostgreSQL, Redis and these submitters alone
  on the cores, as when the workers run on machines of their own. The runs wait on the queue
  and run once the workers go on. Both paced scenarios also measure the floor: 10 more clients
  asking `GET /v1/parameters` (key and app from the cache, no write) once a second each, the
  least any request of this server takes under the same load. Every submit scenario also
  reports the server process's CPU time per 202 in its window, the figure that carries
  across machines.
- `callback`: one submit at a time, 40 of them, a 22-token answer at 5 ms pace: the time from
  sending the submit to receiving its callback, less the median time a blocking request for
  the same run takes in the same run (the run's own duration, measured the same way).
- `burst` (distributed): `--burst` (2,000) submits at once from 200 connections against one
  `conduit worker -c 8`, then against two; runs of 10 tokens at 10 ms. No 5xx, none lost (every
  task ends `succeeded`, every callback arrives exactly once), and the drain time: from the
  first submit to the last callback.

Targets (issue 21): submit p99 ≤ 20 ms at 100 concurrent submitters; callback latency p50 ≤
50 ms over the run's own duration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sse_streams import (
    CONDUIT,
    ConduitSite,
    Stack,
    Target,
    Upstream,
    free_port,
    log,
    machine,
    prepare_site,
    revision,
    start_conduit,
    start_upstream,
    stop_target,
    wait_quiet,
)

FLOOR_PROBERS = 10
ALLOW_LOOPBACK = {"CONDUIT_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}
RECEIVER = Path(__file__).with_name("_receiver.py")
WARMUP = 3.0  # seconds of load before a window: caches filled, pools and queues in step


def drain(target: Target, most: float = 300.0) -> None:
    """Wait until no task waits on any queue (the server's gauges), so that the next scenario
    does not measure the last one's backlog."""
    deadline = time.monotonic() + most
    while time.monotonic() < deadline:
        scraped = httpx.get(f"http://127.0.0.1:{target.port}/metrics", timeout=30).text
        waiting = sum(
            float(line.rsplit(" ", 1)[1])
            for line in scraped.splitlines()
            if line.startswith("conduit_queue_waiting_tasks{")
        )
        if waiting == 0:
            return
        time.sleep(0.5)
    log("the queues did not drain: going on")


# --- the callback receiver ----------------------------------------------------------------------


@dataclass
class Receiver:
    """The callback receiver (`bench/_receiver.py`, a process of its own: its HTTP work does
    not share this process's GIL with the submitters), and a thread here that notes when each
    task's callback first arrived (`time.monotonic()`), how many times, and its status."""

    port: int = 0
    arrived: dict[str, float] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, str] = field(default_factory=dict)
    _process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        self.port = free_port()
        self._process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("_receiver.py")),
                "--port",
                str(self.port),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, name="receiver", daemon=True).start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).is_success:
                    return
            time.sleep(0.05)
        raise RuntimeError("the callback receiver did not start")

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            task_id, at, status = [*line.split(), ""][:3]
            self.arrived.setdefault(task_id, float(at))
            self.counts[task_id] += 1
            self.statuses[task_id] = status

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)

    def forget(self) -> None:
        self.arrived.clear()
        self.counts.clear()
        self.statuses.clear()


# --- the load ------------------------------------------------------------------------------------


def body_of(receiver: Receiver, user: str, query: str = "hi there") -> dict[str, Any]:
    return {
        "inputs": {},
        "query": query,
        "user": user,
        "response_mode": "async",
        "auto_generate_name": False,
        "callback_url": receiver.url,
    }


async def _submit(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> tuple[float, int, str | None]:
    started = time.monotonic()
    async with session.post(url, json=body) as response:
        data = await response.json(content_type=None)
        task_id = data.get("task_id") if response.status == 202 else None
        return time.monotonic() - started, response.status, task_id


def _pct(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


async def submit_open(
    target: Target, receiver: Receiver, seconds: float, warmup: float
) -> dict[str, Any]:
    """100 submitters, one submit per second each (staggered); the submits started in the
    window after `warmup` seconds count."""
    return await _submitters(target, receiver, seconds, warmup, paced=True)


@contextlib.contextmanager
def workers_paused(target: Target) -> Iterator[None]:
    """The target's `conduit worker` processes (and their pools) stopped (SIGSTOP) meanwhile:
    the submits alone on this machine's cores, as with workers on machines of their own; the
    runs wait on their queue and run once the workers go on (SIGCONT)."""
    processes = []
    for pid in target.helpers:
        main = psutil.Process(pid)
        processes += [main, *main.children(recursive=True)]
    for process in processes:
        process.suspend()
    try:
        yield
    finally:
        for process in processes:
            with contextlib.suppress(psutil.Error):
                process.resume()


async def submit_closed(
    target: Target, receiver: Receiver, seconds: float, warmup: float
) -> dict[str, Any]:
    """100 submitters in a closed loop: the most 202s per second."""
    return await _submitters(target, receiver, seconds, warmup, paced=False)


async def _submitters(
    target: Target, receiver: Receiver, seconds: float, warmup: float, *, paced: bool
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    headers = {"Authorization": f"Bearer {target.token}"}
    connector = aiohttp.TCPConnector(limit=0)
    server = psutil.Process(target.pid)
    cpu: list[float] = []

    async def server_cpu() -> None:
        """The server process's CPU seconds at the window's start and end."""
        for at in window:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            total = 0.0
            for process in (server, *server.children(recursive=True)):  # --server-workers
                with contextlib.suppress(psutil.Error):
                    times = process.cpu_times()
                    total += times.user + times.system
            cpu.append(total)

    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        begin = time.monotonic()
        window = (begin + warmup, begin + warmup + seconds)
        measuring = asyncio.ensure_future(server_cpu())

        async def submitter(index: int) -> None:
            await asyncio.sleep(index / 100)
            while (started := time.monotonic()) < window[1]:
                latency, status, _ = await _submit(
                    session, target.url, body_of(receiver, f"submitter-{index}")
                )
                if started >= window[0]:
                    latencies.append(latency)
                    statuses[status] += 1
                if paced:
                    await asyncio.sleep(max(0.0, started + 1.0 - time.monotonic()))

        async def prober(index: int) -> None:
            # The floor: what the cheapest authenticated request of the Service API (its
            # parameters: the key and the app from the cache, no write) takes from the same
            # server under the same load, one a second from each of `FLOOR_PROBERS`.
            url = target.url.replace("/chat-messages", f"/parameters?user=prober-{index}")
            await asyncio.sleep(index / FLOOR_PROBERS + 0.005)
            while (started := time.monotonic()) < window[1]:
                async with session.get(url) as response:
                    await response.read()
                if started >= window[0] and response.status == 200:
                    floor.append(time.monotonic() - started)
                await asyncio.sleep(max(0.0, started + 1.0 - time.monotonic()))

        floor: list[float] = []
        probers = [prober(i) for i in range(FLOOR_PROBERS)] if paced else []
        await asyncio.gather(*(submitter(i) for i in range(100)), *probers)
        await measuring
    figures = _submit_figures(latencies, statuses, seconds)
    for pct in (50, 99):
        found = _pct(floor, pct)
        if found is not None:
            figures[f"floor_p{pct}_ms"] = found * 1000
    accepted = statuses[202]
    figures["server_cpu_ms"] = (cpu[1] - cpu[0]) * 1000 / accepted if accepted else None
    return figures


def _submit_figures(
    latencies: list[float], statuses: Counter[int], elapsed: float
) -> dict[str, Any]:
    p50, p99 = _pct(latencies, 50), _pct(latencies, 99)
    return {
        "accepted_s": statuses[202] / elapsed,
        "p50_ms": None if p50 is None else p50 * 1000,
        "p99_ms": None if p99 is None else p99 * 1000,
        "errors": sum(n for status, n in statuses.items() if status != 202),
    }


def callback_latency(
    target: Target, upstream: Upstream, receiver: Receiver, count: int
) -> dict[str, Any]:
    """Submit → callback for `count` runs one at a time, less a blocking run's own time."""
    upstream.pace(5)
    headers = {"Authorization": f"Bearer {target.token}"}
    query = " ".join(f"w{n}" for n in range(20))  # 22 tokens at 5 ms: ~110 ms of model time
    blocking: list[float] = []
    with httpx.Client(headers=headers, timeout=60) as client:
        for _ in range(max(10, count // 2)):
            started = time.monotonic()
            response = client.post(
                target.url,
                json={**body_of(receiver, "blocking", query), "response_mode": "blocking"}
                | {"callback_url": None},
            )
            response.raise_for_status()
            blocking.append(time.monotonic() - started)
        own = statistics.median(blocking)
        latencies: list[float] = []
        errors = 0
        for _ in range(count):
            started = time.monotonic()
            response = client.post(target.url, json=body_of(receiver, "callback", query))
            if response.status_code != 202:
                errors += 1
                continue
            task_id = response.json()["task_id"]
            deadline = time.monotonic() + 30
            while task_id not in receiver.arrived and time.monotonic() < deadline:
                time.sleep(0.001)
            if task_id not in receiver.arrived:
                errors += 1
                continue
            latencies.append(receiver.arrived[task_id] - started)
    p50, p99 = _pct(latencies, 50), _pct(latencies, 99)
    return {
        "own_ms": own * 1000,
        "p50_ms": None if p50 is None else p50 * 1000,
        "p99_ms": None if p99 is None else p99 * 1000,
        "extra_p50_ms": None if p50 is None else (p50 - own) * 1000,
        "extra_p99_ms": None if p99 is None else (p99 - own) * 1000,
        "errors": errors,
    }


async def burst(target: Target, receiver: Receiver, submits: int) -> dict[str, Any]:
    """`submits` submits at once from 200 connections; waits for every callback."""
    headers = {"Authorization": f"Bearer {target.token}"}
    statuses: Counter[int] = Counter()
    task_ids: list[str] = []
    connector = aiohttp.TCPConnector(limit=200)
    started = time.monotonic()
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:

        async def one(index: int) -> None:
            try:
                _, status, task_id = await _submit(
                    session, target.url, body_of(receiver, f"burst-{index % 50}")
                )
            except aiohttp.ClientError:
                status, task_id = 0, None
            statuses[status] += 1
            if task_id:
                task_ids.append(task_id)

        await asyncio.gather(*(one(i) for i in range(submits)))
    accepted = time.monotonic() - started
    deadline = time.monotonic() + 600
    # The receiver notes arrivals on its own thread and loop: polled, not awaited.
    while time.monotonic() < deadline and any(t not in receiver.arrived for t in task_ids):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    arrived = [receiver.arrived[t] for t in task_ids if t in receiver.arrived]
    drained = (max(arrived) - started) if arrived else None
    succeeded = sum(1 for t in task_ids if receiver.statuses.get(t) == "succeeded")
    return {
        "accepted": statuses[202],
        "errors_5xx": sum(n for s, n in statuses.items() if s >= 500 or s == 0),
        "other": sum(n for s, n in statuses.items() if 202 != s < 500 and s != 0),
        "lost": len(task_ids) - len(arrived),
        "duplicated": sum(1 for t in task_ids if receiver.counts[t] > 1),
        "succeeded": succeeded,
        "accept_s": accepted,
        "drain_s": drained,
    }


# --- a run ---------------------------------------------------------------------------------------


def with_env(site: ConduitSite, extra: dict[str, str]) -> ConduitSite:
    """The site, its servers started with `extra` settings too."""
    original = site.env

    def env(upstream: Upstream) -> dict[str, str]:
        return {**original(upstream), **extra}

    site.env = env  # type: ignore[method-assign]
    return site


def run_mode(
    stack: Stack, mode: str, upstream: Upstream, receiver: Receiver, args: argparse.Namespace
) -> dict[str, Any]:
    extra = dict(ALLOW_LOOPBACK)
    if mode == "distributed" and args.server_workers > 1:
        extra["CONDUIT_HTTP_WORKERS"] = str(args.server_workers)
    site = with_env(prepare_site(stack, mode, upstream), extra)
    figures: dict[str, Any] = {}
    target = start_conduit(stack, site, upstream)
    try:
        wait_quiet(25, 120)
        upstream.pace(0)
        receiver.forget()
        log(f"{mode}: submit (100 submitters, 1/s each, {args.window:g} s)")
        figures["submit"] = asyncio.run(submit_open(target, receiver, args.window, WARMUP))
        drain(target)
        if mode == "distributed":
            log(f"{mode}: submit, workers paused (100 submitters, 1/s each, {args.window:g} s)")
            with workers_paused(target):
                figures["submit_alone"] = asyncio.run(
                    submit_open(target, receiver, args.window, WARMUP)
                )
            drain(target)
        log(f"{mode}: submit-max (100 submitters, closed loop, {args.window:g} s)")
        figures["submit_max"] = asyncio.run(submit_closed(target, receiver, args.window, WARMUP))
        drain(target)
        receiver.forget()
        log(f"{mode}: callback ({args.callbacks} runs one at a time)")
        figures["callback"] = callback_latency(target, upstream, receiver, args.callbacks)
    finally:
        stop_target(stack, target)
    if mode == "distributed" and args.burst:
        for workers in (1, 2):
            target = start_conduit(stack, site, upstream, worker_args=["-c", "8"])
            try:
                for _ in range(workers - 1):
                    env = site.env(upstream)
                    target.helpers.append(
                        stack.spawn(
                            f"worker-extra-{target.port}", [CONDUIT, "worker", "-c", "8"], env
                        )
                    )
                time.sleep(3)  # the extra worker's consumer up
                wait_quiet(25, 120)
                upstream.pace(10)
                receiver.forget()
                log(f"{mode}: burst of {args.burst} against {workers} worker(s)")
                figures[f"burst_{workers}"] = asyncio.run(burst(target, receiver, args.burst))
            finally:
                stop_target(stack, target)
    return figures


def _median(values: list[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def summarize(runs: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for run in runs:
        for mode, figures in run.items():
            for scenario, values in figures.items():
                for name, value in values.items():
                    summary.setdefault(f"{mode}.{scenario}.{name}", []).append(value)
    return {key: _median(values) for key, values in summary.items()}


def table(summary: dict[str, Any], modes: list[str]) -> list[str]:
    def get(mode: str, key: str) -> float | None:
        value = summary.get(f"{mode}.{key}")
        return None if value is None else float(value)

    header = "| figure | " + " | ".join(modes) + " | target | met |"
    lines = [header, "|---" * (len(modes) + 3) + "|"]

    def row(label: str, cells: list[str], target: str = "", met: str = "") -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {target} | {met} |")

    p99s = [get(m, "submit.p99_ms") for m in modes]
    row(
        "submit p50 / p99 ms (100 submitters, 1/s each)",
        [f"{_fmt(get(m, 'submit.p50_ms'))} / {_fmt(get(m, 'submit.p99_ms'))}" for m in modes],
        "p99 ≤ 20 ms",
        " / ".join("yes" if v is not None and v <= 20 else "**no**" for v in p99s),
    )
    row(
        "  the floor: GET /v1/parameters p50 / p99 ms, same load (10/s)",
        [
            f"{_fmt(get(m, 'submit.floor_p50_ms'))} / {_fmt(get(m, 'submit.floor_p99_ms'))}"
            for m in modes
        ],
    )
    row(
        "  202s per second, errors; server CPU ms per 202",
        [
            f"{_fmt(get(m, 'submit.accepted_s'))}, {_fmt(get(m, 'submit.errors'), 0)}; "
            f"{_fmt(get(m, 'submit.server_cpu_ms'), 2)}"
            for m in modes
        ],
    )
    if "distributed" in modes and get("distributed", "submit_alone.p99_ms") is not None:
        alone = get("distributed", "submit_alone.p99_ms")
        cells = ["—" for _ in modes]
        cells[modes.index("distributed")] = (
            f"{_fmt(get('distributed', 'submit_alone.p50_ms'))} / {_fmt(alone)}; "
            f"{_fmt(get('distributed', 'submit_alone.accepted_s'))}/s, "
            f"{_fmt(get('distributed', 'submit_alone.errors'), 0)} errors; "
            f"CPU {_fmt(get('distributed', 'submit_alone.server_cpu_ms'), 2)} ms per 202; "
            f"the floor {_fmt(get('distributed', 'submit_alone.floor_p50_ms'))} / "
            f"{_fmt(get('distributed', 'submit_alone.floor_p99_ms'))}"
        )
        row(
            "submit p50 / p99 ms, the workers paused (their runs wait on the queue)",
            cells,
            "p99 ≤ 20 ms",
            "yes" if alone is not None and alone <= 20 else "**no**",
        )
    row(
        "submit-max: 202s per second (closed loop, 100)",
        [_fmt(get(m, "submit_max.accepted_s")) for m in modes],
    )
    row(
        "  its p50 / p99 ms, errors",
        [
            f"{_fmt(get(m, 'submit_max.p50_ms'))} / {_fmt(get(m, 'submit_max.p99_ms'))}, "
            f"{_fmt(get(m, 'submit_max.errors'), 0)}"
            for m in modes
        ],
    )
    extras = [get(m, "callback.extra_p50_ms") for m in modes]
    row(
        "callback: submit → received p50 / p99 ms",
        [f"{_fmt(get(m, 'callback.p50_ms'))} / {_fmt(get(m, 'callback.p99_ms'))}" for m in modes],
    )
    row("  the run's own time (blocking) ms", [_fmt(get(m, "callback.own_ms")) for m in modes])
    row(
        "  extra over it p50 / p99 ms",
        [
            f"{_fmt(get(m, 'callback.extra_p50_ms'))} / {_fmt(get(m, 'callback.extra_p99_ms'))}"
            for m in modes
        ],
        "p50 ≤ +50 ms",
        " / ".join("yes" if v is not None and v <= 50 else "**no**" for v in extras),
    )
    for workers in (1, 2):
        if "distributed" in modes and get("distributed", f"burst_{workers}.accepted") is not None:
            key = f"burst_{workers}"
            cells = ["" for _ in modes]
            cells[modes.index("distributed")] = (
                f"{_fmt(get('distributed', key + '.accepted'), 0)} accepted in "
                f"{_fmt(get('distributed', key + '.accept_s'))} s, drained in "
                f"{_fmt(get('distributed', key + '.drain_s'))} s; 5xx "
                f"{_fmt(get('distributed', key + '.errors_5xx'), 0)}, lost "
                f"{_fmt(get('distributed', key + '.lost'), 0)}, duplicated "
                f"{_fmt(get('distributed', key + '.duplicated'), 0)}"
            )
            row(f"burst against {workers} worker(s)", cells, "no 5xx, no loss")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("embedded", "distributed", "both"), default="both")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 run, shorter windows")
    parser.add_argument("--window", type=float, default=10.0, help="seconds per submit scenario")
    parser.add_argument("--callbacks", type=int, default=40)
    parser.add_argument("--burst", type=int, default=2000, help="0: no burst scenario")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--server-workers",
        type=int,
        default=1,
        help="distributed: `conduit serve` processes (CONDUIT_HTTP_WORKERS)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.window, args.callbacks = 1, 5.0, 20
    modes = ["embedded", "distributed"] if args.mode == "both" else [args.mode]
    log(f"code {revision()}; machine: {machine()}")
    receiver = Receiver()
    receiver.start()
    runs: list[dict[str, dict[str, Any]]] = []
    stack = Stack(args.keep)
    failed = False
    try:
        upstream = start_upstream(stack)
        for index in range(args.runs):
            log(f"run {index + 1}/{args.runs}")
            run: dict[str, dict[str, Any]] = {}
            for mode in modes:
                run[mode] = run_mode(stack, mode, upstream, receiver, args)
            runs.append(run)
    except Exception as error:  # a failed run is reported, and the exit code says so
        log(f"failed: {error!r}")
        failed = True
    finally:
        stack.close()
        receiver.stop()
    if not runs:
        return 1
    summary = summarize(runs)
    print()
    print(f"Machine: {machine()}; code: {revision()}; medians of {len(runs)} run(s).")
    print()
    print("\n".join(table(summary, modes)))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "runs": runs}, indent=1))
    bad = any(
        (summary.get(f"{m}.{k}") or 0) > 0
        for m in modes
        for k in ("burst_1.errors_5xx", "burst_1.lost", "burst_2.errors_5xx", "burst_2.lost")
    )
    return 1 if failed or bad else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
