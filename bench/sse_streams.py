"""SSE streams: Conduit side by side with a bare Starlette + aiohttp relay of the same upstream.

    .venv/bin/python bench/sse_streams.py                       # 3 runs, both modes (~35 min)
    .venv/bin/python bench/sse_streams.py --quick               # 1 run, short windows (~6 min)
    .venv/bin/python bench/sse_streams.py --mode embedded --runs 5 --hold-runs 0 --json out.json

Everything is started here and stopped at the end: the fake OpenAI-compatible upstream
(`bench/_upstream.py`, i.e. `tests/fakes/fake_openai.py`), the bare relay (`bench/_relay.py`),
Conduit (`conduit serve` in a temp dir; embedded: SQLite + in-process event log; distributed:
a fresh PostgreSQL database, Redis dbs 13 and 14, `conduit migrate` and a `conduit worker`), and
the load generator processes (`bench/_loadgen.py`, aiohttp). Each server is its own process and
every scenario hits one server at a time; in a run the targets take turns scenario by scenario.

Scenarios (the load generator's details are in `bench/_loadgen.py`):

- `ttfb`: N = 1, 100, 1000 concurrent streams in a closed loop, the upstream pacing tokens
  `--pace-ms` apart (50 ms: the first token comes 50 ms after the request reaches it) with
  answers of `--words` + 2 tokens. The streams are spread over a ramp; TTFB (to the first
  `data:` frame) of every stream started in the window; p50 / p99. Conduit's figure is its
  extra over the bare relay in the same run.
- `starts`: stream starts per second: 32 concurrent streams of 3-token answers at pace 0, so
  that setting a stream up is all the work (in Conduit: auth, the conversation and message rows,
  the event log, the result) — what bounds starting many streams at once.
- `events`: frames relayed per second: pace 0, 1,000-token answers, 50 concurrent streams, a
  fixed window; frames received by the clients per second, as a ratio to the bare relay's.
- `hold`: a fresh server; `--hold-streams` (9,000) streams opened by two load generator
  processes at most `--hold-rate` (100) per second and never while 64 of them still wait for
  their response headers (the ramp follows the server instead of storming it), held open by a
  slow upstream (a token every 5 s); once all are open (first frame received), the server is
  sampled for 15 s and the streams are closed. Errors, the peak of streams open at once, RSS
  and file descriptors of the server; RSS per stream is (peak RSS - RSS before) / streams.
  With errors (1 % of the streams ends the attempt early), it tries again with 90 % of the
  peak, twice at most, so that the figure is the most streams held with 0 errors.

Server CPU is the process's own CPU time over the window (all threads), as % of one core.
Medians over the runs are printed; `met` compares them with the targets of the issue.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import queue
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
PYTHON = sys.executable
CONDUIT = str(Path(sys.executable).parent / "conduit")
REDIS_URL = "redis://127.0.0.1:6379/14"  # the event log, stop flags, limits, cache
BROKER_URL = "redis://127.0.0.1:6379/13"  # Celery
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGETS = ("relay", "embedded", "distributed")
WORKDIR: Path | None = None  # the Stack's temp dir, once made
LABELS = {"relay": "bare relay", "embedded": "Conduit embedded", "distributed": "Conduit distr."}

Metrics = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    runs: int = 3
    modes: tuple[str, ...] = ("embedded", "distributed")
    levels: tuple[int, ...] = (1, 100, 1000)
    pace_ms: float = 50.0
    words: int = 20
    ramp: float = 5.0  # seconds over which the streams of a level start (1 stream: none)
    warmup: float = 5.0
    window: float = 15.0
    starts_concurrency: int = 32
    starts_window: float = 10.0
    events_concurrency: int = 50
    events_words: int = 1000
    events_window: float = 10.0
    hold_streams: int = 9000
    hold_rate: float = 100.0  # at most; the ramp also waits for the server (hold_pending)
    hold_pending: int = 64  # streams at most waiting for their response headers
    hold_pace_ms: float = 5000.0
    hold_full: float = 15.0  # seconds to sample the server once every stream is open
    hold_runs: int = 1
    hold_search: bool = True  # on errors, try again with fewer streams (twice at most)
    scenarios: tuple[str, ...] = ("ttfb", "starts", "events", "hold")
    diagnose: bool = False  # serve Conduit through bench/_conduit_probe.py (timers)

    @property
    def stream_seconds(self) -> float:
        return (self.words + 3) * self.pace_ms / 1000


QUICK = Plan(
    runs=1,
    ramp=2.0,
    warmup=2.0,
    window=6.0,
    starts_window=5.0,
    events_window=5.0,
    hold_streams=2000,
    hold_rate=200.0,
    hold_pace_ms=2000.0,
    hold_full=5.0,
    hold_search=False,
)


# --- processes -----------------------------------------------------------------------------------


class Stack:
    """Every child process and the temp dir; `close()` stops them in reverse order."""

    def __init__(self, keep: bool) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sse-bench-"))
        self.keep = keep
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.cleanups: list[Callable[[], None]] = []

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> int:
        log = (self.dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.dir,
            start_new_session=True,  # a Ctrl-C on the terminal reaches only this script
        )
        log.close()
        self.procs.append((name, proc))
        return proc.pid

    def stop(self, pid: int, timeout: float = 15.0) -> None:
        for index, (_, proc) in enumerate(self.procs):
            if proc.pid == pid:
                del self.procs[index]
                _terminate(proc, timeout)
                return

    def close(self) -> None:
        while self.procs:
            _, proc = self.procs.pop()
            _terminate(proc, 15.0)
        while self.cleanups:
            with contextlib.suppress(Exception):
                self.cleanups.pop()()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, pid: int, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            raise RuntimeError(f"{what} exited during start-up")
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f} s")


# --- the fake upstream ---------------------------------------------------------------------------


@dataclass
class Upstream:
    port: int
    pid: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def pace(self, pace_ms: float) -> None:
        """Forget the request log (memory) and set the pace for what follows."""
        base = f"http://127.0.0.1:{self.port}"
        httpx.post(f"{base}/reset", timeout=30).raise_for_status()
        httpx.post(f"{base}/control", json={"pace_ms": pace_ms}, timeout=10).raise_for_status()


def start_upstream(stack: Stack) -> Upstream:
    port = free_port()
    # POLL 1 s: a paced handler wakes once per token (pace ≤ 1 s), see bench/_upstream.py.
    args = [PYTHON, str(BENCH / "_upstream.py"), "--port", str(port), "--poll", "1.0"]
    pid = stack.spawn(f"upstream-{port}", args, _clean_env())
    wait_http(f"http://127.0.0.1:{port}/v1/models", pid, "the fake upstream")
    return Upstream(port, pid)


# --- targets -------------------------------------------------------------------------------------


@dataclass
class Target:
    key: str
    port: int
    pid: int
    token: str | None = None
    helpers: list[int] = field(default_factory=list)
    probe: Path | None = None  # `--diagnose`: the report file of bench/_conduit_probe.py

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat-messages"


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUIT_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra or {})
    return env


def start_relay(stack: Stack, upstream: Upstream) -> Target:
    port = free_port()
    args = [PYTHON, str(BENCH / "_relay.py"), "--port", str(port)]
    pid = stack.spawn(f"relay-{port}", [*args, "--upstream", upstream.base_url], _clean_env())
    wait_http(f"http://127.0.0.1:{port}/health", pid, "the bare relay")
    return Target("relay", port, pid)


@dataclass
class ConduitSite:
    """One Conduit installation (data dir, and for distributed its database), reused by runs."""

    mode: str
    home: Path
    database: str | None = None
    token: str | None = None

    def env(self, upstream: Upstream) -> dict[str, str]:
        extra = {
            "CONDUIT_DATA_DIR": str(self.home / ".conduit"),
            "CONDUIT_MODEL_BASE_URL": upstream.base_url,
            "CONDUIT_LOG_LEVEL": "WARNING",
        }
        if self.mode == "distributed":
            assert self.database is not None
            extra.update(
                CONDUIT_DATABASE_URL=f"postgresql://postgres@127.0.0.1:5432/{self.database}",
                CONDUIT_REDIS_URL=REDIS_URL,
                CONDUIT_BROKER_URL=BROKER_URL,
            )
        return _clean_env(extra)


def _flush_redis() -> None:
    import redis

    for url in (REDIS_URL, BROKER_URL):
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()


def prepare_site(stack: Stack, mode: str, upstream: Upstream) -> ConduitSite:
    home = stack.dir / mode
    home.mkdir()
    site = ConduitSite(mode, home)
    if mode == "distributed":
        import psycopg

        site.database = f"conduit_sse_bench_{os.getpid()}_{secrets.token_hex(3)}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{site.database}"')

        def drop() -> None:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{site.database}" WITH (FORCE)')

        stack.cleanups.append(drop)
        _flush_redis()
        stack.cleanups.append(_flush_redis)
        _run([CONDUIT, "migrate"], site.env(upstream), home)
    _run(
        [
            CONDUIT,
            "create-admin",
            "--email",
            "bench@example.com",
            "--password",
            "long password",
            "--workspace",
            "W",
        ],
        site.env(upstream),
        home,
    )
    return site


def _run(args: list[str], env: dict[str, str], cwd: Path) -> None:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stderr[-2000:]}")


def start_conduit(
    stack: Stack,
    site: ConduitSite,
    upstream: Upstream,
    diagnose: bool = False,
    worker_args: list[str] | None = None,
) -> Target:
    port = free_port()
    env = site.env(upstream)
    command = [CONDUIT, "serve", "--port", str(port)]
    probe = None
    if diagnose:
        probe = stack.dir / f"probe-{port}.json"
        command = [PYTHON, str(BENCH / "_conduit_probe.py"), "--report", str(probe), *command[1:]]
    pid = stack.spawn(f"conduit-{site.mode}-{port}", command, env)
    target = Target(site.mode, port, pid, probe=probe)
    if site.mode == "distributed":
        worker = [CONDUIT, "worker", *(worker_args or [])]
        target.helpers.append(stack.spawn(f"worker-{port}", worker, env))
    wait_http(f"http://127.0.0.1:{port}/health", pid, f"conduit serve ({site.mode})")
    if site.token is None:
        site.token = _create_key(port)
    target.token = site.token
    return target


def _create_key(port: int) -> str:
    base = f"http://127.0.0.1:{port}/console/api"
    with httpx.Client(timeout=30) as client:
        login = client.post(
            f"{base}/login", json={"email": "bench@example.com", "password": "long password"}
        )
        login.raise_for_status()
        auth = {"Authorization": f"Bearer {login.json()['data']['access_token']}"}
        app = client.post(f"{base}/apps", json={"name": "bench", "mode": "chat"}, headers=auth)
        app.raise_for_status()
        key = client.post(f"{base}/apps/{app.json()['data']['id']}/api-keys", headers=auth)
        key.raise_for_status()
        return str(key.json()["data"]["token"])


def stop_target(stack: Stack, target: Target) -> None:
    stack.stop(target.pid, timeout=20)
    for pid in target.helpers:
        stack.stop(pid)


# --- measuring the server ------------------------------------------------------------------------


class Sampler:
    """Samples a process every 0.25 s: (time, CPU seconds, RSS bytes, open fds)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.samples: list[tuple[float, float, int, int]] = []
        self.pressure: list[tuple[float, float | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def sample(self) -> tuple[float, float, int, int]:
        self.pressure.append((time.time(), _cpu_pressure()))
        with self.process.oneshot():
            times = self.process.cpu_times()
            return (
                time.time(),
                times.user + times.system,
                self.process.memory_info().rss,
                self.process.num_fds(),
            )

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.samples.append(self.sample())
            self._stop.wait(0.25)

    def cpu_pct(self, lo: float, hi: float) -> float | None:
        inside = [s for s in self.samples if lo <= s[0] <= hi]
        if len(inside) < 2:
            return None
        first, last = inside[0], inside[-1]
        return (last[1] - first[1]) / (last[0] - first[0]) * 100

    def pressure_pct(self, lo: float, hi: float) -> float | None:
        """Share of the window in which some task of the machine waited for a CPU (PSI)."""
        inside = [p for p in self.pressure if lo <= p[0] <= hi and p[1] is not None]
        if len(inside) < 2:
            return None
        (t0, v0), (t1, v1) = inside[0], inside[-1]
        assert v0 is not None and v1 is not None
        return (v1 - v0) / (t1 - t0) * 100

    def peak(self, lo: float, hi: float) -> tuple[int, int]:
        inside = [s for s in self.samples if lo <= s[0] <= hi] or self.samples[-1:]
        return max(s[2] for s in inside), max(s[3] for s in inside)


def _cpu_pressure() -> float | None:
    """Seconds some task waited for a CPU since boot (/proc/pressure/cpu), if the kernel says."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return int(line.rsplit("total=", 1)[1]) / 1e6


def _pressure_avg10() -> float | None:
    try:
        return float(Path("/proc/pressure/cpu").read_text().split("avg10=")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return None


def wait_quiet(limit: float, most: float) -> None:
    """Wait (up to `most` seconds) until the machine's CPU pressure (PSI avg10) is below `limit`
    percent: other work on the shared cores would otherwise be measured too."""
    deadline = time.monotonic() + most
    pressure = _pressure_avg10()
    if pressure is None or pressure < limit:
        return
    log(f"CPU pressure {pressure:.0f} % (other processes): waiting up to {most:.0f} s")
    while time.monotonic() < deadline:
        time.sleep(5)
        pressure = _pressure_avg10()
        if pressure is None or pressure < limit:
            return
    log(f"still {pressure:.0f} %: going on")


def settle(pid: int, timeout: float = 30.0) -> None:
    """Wait until the server is quiet (< 10 % of a core over half a second)."""
    process = psutil.Process(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = process.cpu_times()
        time.sleep(0.5)
        after = process.cpu_times()
        busy = (after.user + after.system - before.user - before.system) / 0.5
        if busy < 0.10:
            return


# --- the load generators -------------------------------------------------------------------------


Progress = Callable[[dict[str, int], list[subprocess.Popen[bytes]]], None]


def loadgen(
    configs: list[dict[str, Any]], on_progress: Progress | None = None
) -> list[dict[str, Any]]:
    """Run one `_loadgen.py` process per config; returns their results (progress summed).
    Results come back in files (`result_path`), progress as short JSON lines on stdout."""
    workdir = Path(tempfile.mkdtemp(prefix="loadgen-", dir=WORKDIR))
    lines: queue.Queue[tuple[int, str | None]] = queue.Queue()
    procs = []
    for index, config in enumerate(configs):
        config = {**config, "result_path": str(workdir / f"result-{index}.json")}
        with (workdir / f"stderr-{index}.log").open("wb") as errors:
            procs.append(
                subprocess.Popen(
                    [PYTHON, str(BENCH / "_loadgen.py"), json.dumps(config)],
                    stdout=subprocess.PIPE,
                    stderr=errors,
                    env=_clean_env(),
                )
            )

    def reader(index: int, stream: IO[bytes]) -> None:
        for raw in stream:
            lines.put((index, raw.decode(errors="replace")))
        lines.put((index, None))

    for index, proc in enumerate(procs):
        threading.Thread(target=reader, args=(index, proc.stdout), daemon=True).start()
    progress: list[dict[str, int]] = [{} for _ in procs]
    finished = 0
    try:
        while finished < len(procs):
            index, line = lines.get()
            if line is None:
                finished += 1
                continue
            with contextlib.suppress(json.JSONDecodeError):
                message = json.loads(line)
                if "progress" in message:
                    progress[index] = message["progress"]
                    if on_progress is not None:
                        keys = ("started", "pending", "open", "done", "errors")
                        summed = {k: sum(int(p.get(k, 0)) for p in progress) for k in keys}
                        on_progress(summed, procs)
        for proc in procs:
            proc.wait(60)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    results = []
    for index in range(len(procs)):
        path = workdir / f"result-{index}.json"
        if not path.exists():
            detail = (workdir / f"stderr-{index}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"load generator {index} gave no result: {detail}")
        results.append(json.loads(path.read_text()))
    shutil.rmtree(workdir, ignore_errors=True)
    return results


def _merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    errors: dict[str, int] = {}
    for result in results:
        for kind, count in result["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
    return {
        "ttfb_ms": [t for r in results for t in r["ttfb_ms"]],
        "errors": errors,
        "error_samples": [s for r in results for s in r["error_samples"]][:5],
        "events_in_window": sum(r["events_in_window"] for r in results),
        "ok_in_window": sum(r["ok_in_window"] for r in results),
        "started": sum(r["started"] for r in results),
        "peak_open": sum(r["peak_open"] for r in results),
    }


def _pct(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))]


def steady(
    target: Target,
    *,
    concurrency: int,
    words: int,
    ramp: float,
    warmup: float,
    window: float,
    drain: bool,
    procs: int = 1,
) -> Metrics:
    """A closed loop of `concurrency` streams; TTFB, frames and finished streams in the window."""
    settle(target.pid)
    start_at = time.time() + 1.0
    share = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    configs = []
    offset = 0
    for count in share:
        configs.append(
            {
                "mode": "steady",
                "url": target.url,
                "token": target.token,
                "concurrency": count,
                "total": concurrency,
                "offset": offset,
                "words": words,
                "ramp": ramp if concurrency > 1 else 0.0,
                "warmup": warmup,
                "window": window,
                "start_at": start_at,
                "drain": drain,
            }
        )
        offset += count
    lo = start_at + (ramp if concurrency > 1 else 0.0) + warmup
    with Sampler(target.pid) as sampler, Probe(target, lo, lo + window) as probe:
        merged = _merge(loadgen(configs))
    ttfb = merged["ttfb_ms"]
    return {
        "ttfb_p50": _pct(ttfb, 50),
        "ttfb_p99": _pct(ttfb, 99),
        "samples": len(ttfb),
        "events_s": merged["events_in_window"] / window,
        "streams_s": merged["ok_in_window"] / window,
        "errors": sum(merged["errors"].values()),
        "error_kinds": merged["errors"],
        "error_samples": merged["error_samples"],
        "cpu_pct": sampler.cpu_pct(lo, lo + window),
        "cpu_pressure_pct": sampler.pressure_pct(lo, lo + window),
        "probe": probe.report,
        "window_s": window,
    }


class Probe:
    """With `--diagnose`: SIGUSR1 to the probed server at the window's start (reset) and end."""

    def __init__(self, target: Target, lo: float, hi: float) -> None:
        self.target, self.lo, self.hi = target, lo, hi
        self.report: dict[str, Any] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Probe:
        if self.target.probe is not None:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.target.probe is not None:
            self._thread.join()

    def _run(self) -> None:
        probe = self.target.probe
        assert probe is not None
        for moment in (self.lo, self.hi):
            time.sleep(max(0.0, moment - time.time()))
            probe.unlink(missing_ok=True)
            os.kill(self.target.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                self.report = json.loads(probe.read_text())
                return
            time.sleep(0.1)


def hold(target: Target, upstream: Upstream, plan: Plan, streams: int) -> Metrics:
    """Open `streams` streams (adaptive ramp, see bench/_loadgen.py) and keep them open; then
    errors, the peak of open streams, RSS and fds of the server while all were open."""
    pace = plan.hold_pace_ms / 1000
    # Long enough to outlast even a slow ramp (10/s): the release closes them anyway.
    tokens = math.ceil((streams / 10 + pace + plan.hold_full + 150) / pace)
    procs = 2 if streams > 1000 else 1
    # Warm the server (imports, caches, pools) before the baseline RSS, at pace 0.
    upstream.pace(0)
    steady(target, concurrency=4, words=3, ramp=0, warmup=0, window=2, drain=True)
    upstream.pace(plan.hold_pace_ms)
    settle(target.pid)
    start_at = time.time() + 2.0
    configs = [
        {
            "mode": "hold",
            "url": target.url,
            "token": target.token,
            "streams": len(range(p, streams, procs)),
            "offset": p,
            "procs": procs,
            "rate": plan.hold_rate,
            "max_pending": plan.hold_pending,
            "words": tokens - 2,
            "start_at": start_at,
            "connect_timeout": 120,
        }
        for p in range(procs)
    ]
    give_up_at = start_at + streams / 10 + pace + 120  # a ramp slower than 10/s: not held
    abort_errors = max(10, streams // 100)  # 1 %: the answer (not held) is known by then
    state: dict[str, Any] = {"full_at": 0.0, "released": False, "aborted": False}
    timeline: list[dict[str, Any]] = []
    sampler = Sampler(target.pid)

    def on_progress(progress: dict[str, int], procs_: list[subprocess.Popen[bytes]]) -> None:
        now = time.time()
        if not timeline or now - timeline[-1]["t"] - start_at >= 10:
            rss = sampler.samples[-1][2] / 2**20 if sampler.samples else None
            cpu = sampler.cpu_pct(now - 10, now)
            timeline.append({"t": round(now - start_at, 1), **progress, "rss_mb": rss, "cpu": cpu})
        if progress["open"] >= streams and not state["full_at"]:
            state["full_at"] = now
        full_at = state["full_at"]
        aborted = progress["errors"] >= abort_errors
        done = (full_at and now >= full_at + plan.hold_full) or now >= give_up_at or aborted
        if done and not state["released"]:
            state["released"], state["aborted"] = True, aborted
            for proc in procs_:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGUSR1)

    with sampler:
        baseline = sampler.sample()
        merged = _merge(loadgen(configs, on_progress))
    full_at = state["full_at"]
    if full_at:
        rss, fds = sampler.peak(full_at, full_at + plan.hold_full)
    else:  # never all open at once: the peak over the whole hold
        rss, fds = sampler.peak(0, float("inf"))
    ttfb = merged["ttfb_ms"]
    errors = sum(merged["errors"].values())
    started = merged["started"]
    return {
        "streams": streams,
        "held": streams if errors == 0 and merged["peak_open"] >= streams else None,
        "peak_open": merged["peak_open"],
        "errors": errors,
        "error_kinds": merged["errors"],
        "error_samples": merged["error_samples"],
        "aborted": state["aborted"],
        "rss_base_mb": baseline[2] / 2**20,
        "rss_peak_mb": rss / 2**20,
        "rss_per_stream_kb": (rss - baseline[2]) / 1024 / max(1, merged["peak_open"]),
        "fds_peak": fds,
        "ttfb_p50_over_pace": (_pct(ttfb, 50) or 0) - plan.hold_pace_ms if ttfb else None,
        "ttfb_p99_over_pace": (_pct(ttfb, 99) or 0) - plan.hold_pace_ms if ttfb else None,
        "ramp_s": (full_at - start_at) if full_at else None,
        "opened_per_s": started / (full_at - start_at) if full_at else None,
        "cpu_pct_held": sampler.cpu_pct(full_at, full_at + plan.hold_full) if full_at else None,
        "timeline": timeline,
    }


# --- one run -------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_once(
    stack: Stack, plan: Plan, sites: dict[str, ConduitSite], upstream: Upstream, hold_too: bool
) -> dict[str, dict[str, Metrics]]:
    """One run: every scenario, the targets taking turns; returns scenario -> target -> metrics."""
    out: dict[str, dict[str, Metrics]] = {}
    keys = ["relay", *plan.modes]
    steady_scenarios = [s for s in plan.scenarios if s != "hold"]
    if steady_scenarios:
        targets: dict[str, Target] = {}
        try:
            targets["relay"] = start_relay(stack, upstream)
            for mode in plan.modes:
                targets[mode] = start_conduit(stack, sites[mode], upstream, plan.diagnose)
            upstream.pace(0)
            for key in keys:  # first requests pay for imports and caches: not measured
                steady(targets[key], concurrency=8, words=3, ramp=0, warmup=0, window=2, drain=True)
            if "ttfb" in plan.scenarios:
                upstream.pace(plan.pace_ms)
                for level in plan.levels:
                    for key in keys:
                        log(f"ttfb: {level} stream(s), {key}")
                        out.setdefault(f"ttfb@{level}", {})[key] = steady(
                            targets[key],
                            concurrency=level,
                            words=plan.words,
                            ramp=plan.ramp,
                            warmup=plan.warmup,
                            window=plan.window * (2 if level == 1 else 1),
                            drain=True,
                            procs=1 if level <= 100 else 2,
                        )
            if "starts" in plan.scenarios:
                upstream.pace(0)
                for key in keys:
                    log(f"starts: {key}")
                    out.setdefault("starts", {})[key] = steady(
                        targets[key],
                        concurrency=plan.starts_concurrency,
                        words=1,
                        ramp=1.0,
                        warmup=2.0,
                        window=plan.starts_window,
                        drain=True,
                    )
            if "events" in plan.scenarios:
                upstream.pace(0)
                for key in keys:
                    log(f"events: {key}")
                    out.setdefault("events", {})[key] = steady(
                        targets[key],
                        concurrency=plan.events_concurrency,
                        words=plan.events_words,
                        ramp=1.0,
                        warmup=3.0,
                        window=plan.events_window,
                        drain=False,
                    )
        finally:
            for target in targets.values():
                stop_target(stack, target)
    if hold_too and "hold" in plan.scenarios:
        for key in keys:
            streams = plan.hold_streams
            attempts: list[dict[str, Any]] = []
            best: Metrics | None = None
            for _ in range(3 if plan.hold_search else 1):
                target = (
                    start_relay(stack, upstream)
                    if key == "relay"
                    else start_conduit(stack, sites[key], upstream)
                )
                try:
                    log(f"hold: {streams} streams, at most {plan.hold_rate:.0f}/s, {key}")
                    result = hold(target, upstream, plan, streams)
                finally:
                    stop_target(stack, target)
                log(
                    f"hold: {key}: {result['peak_open']} open at the peak, "
                    f"{result['errors']} errors, {result['rss_per_stream_kb']:.1f} KB/stream, "
                    f"{result['fds_peak']} fds, opened at {result['opened_per_s'] or 0:.0f}/s"
                )
                log(
                    "hold: timeline (s: started/open/awaiting headers, server CPU %): "
                    + ", ".join(
                        f"{p['t']:.0f}: {p['started']}/{p['open']}/{p['pending']} {_fmt(p['cpu'])}%"
                        for p in result["timeline"]
                    )
                )
                attempts.append({k: result[k] for k in ("streams", "errors", "peak_open")})
                if best is None or (result["held"] or 0) > (best["held"] or 0):
                    best = result
                if result["held"] is not None:
                    break
                # Fewer streams next time: 90 % of the most that were open at once.
                step = 250 if result["peak_open"] >= 2000 else 50
                streams = min(streams - step, int(result["peak_open"] * 0.9) // step * step)
                if streams <= 0:
                    break
            assert best is not None
            out.setdefault("hold", {})[key] = {**best, "attempts": attempts}
        upstream.pace(0)
    return out


# --- reporting -----------------------------------------------------------------------------------


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _fmt(value: float | None, digits: int = 0, sign: bool = False) -> str:
    if value is None:
        return "—"
    text = f"{value:+,.{digits}f}" if sign else f"{value:,.{digits}f}"
    return text


def summarize(runs: list[dict[str, dict[str, Metrics]]], plan: Plan) -> dict[str, Any]:
    """Medians over the runs, and per-run differences from the relay (then their median)."""
    keys = ["relay", *plan.modes]
    summary: dict[str, Any] = {}

    def values(scenario: str, key: str, metric: str) -> list[Any]:
        return [r.get(scenario, {}).get(key, {}).get(metric) for r in runs]

    for level in plan.levels:
        scenario = f"ttfb@{level}"
        for key in keys:
            for metric in ("ttfb_p50", "ttfb_p99", "events_s", "streams_s", "cpu_pct"):
                summary[f"{scenario}.{key}.{metric}"] = _median(values(scenario, key, metric))
            summary[f"{scenario}.{key}.errors"] = sum(
                v or 0 for v in values(scenario, key, "errors")
            )
            summary[f"{scenario}.{key}.samples"] = sum(
                v or 0 for v in values(scenario, key, "samples")
            )
            if key != "relay":
                for metric in ("ttfb_p50", "ttfb_p99"):
                    diffs = [
                        (r[scenario][key][metric] - r[scenario]["relay"][metric])
                        if r.get(scenario, {}).get(key, {}).get(metric) is not None
                        and r.get(scenario, {}).get("relay", {}).get(metric) is not None
                        else None
                        for r in runs
                    ]
                    summary[f"{scenario}.{key}.{metric}_extra"] = _median(diffs)
    for key in keys:
        for metric in ("streams_s", "cpu_pct"):
            summary[f"starts.{key}.{metric}"] = _median(values("starts", key, metric))
        summary[f"starts.{key}.errors"] = sum(v or 0 for v in values("starts", key, "errors"))
        for metric in ("events_s", "cpu_pct"):
            summary[f"events.{key}.{metric}"] = _median(values("events", key, metric))
        per_cpu = [
            r["events"][key]["events_s"] / (r["events"][key]["cpu_pct"] / 100)
            if r.get("events", {}).get(key, {}).get("cpu_pct")
            else None
            for r in runs
        ]
        summary[f"events.{key}.per_cpu_s"] = _median(per_cpu)
        summary[f"events.{key}.errors"] = sum(v or 0 for v in values("events", key, "errors"))
        if key != "relay":
            ratios = [
                r["events"][key]["events_s"] / r["events"]["relay"]["events_s"]
                if r.get("events", {}).get(key) and r["events"].get("relay", {}).get("events_s")
                else None
                for r in runs
            ]
            summary[f"events.{key}.ratio"] = _median(ratios)
            per_cpu_ratios = [
                (r["events"][key]["events_s"] / r["events"][key]["cpu_pct"])
                / (r["events"]["relay"]["events_s"] / r["events"]["relay"]["cpu_pct"])
                if r.get("events", {}).get(key, {}).get("cpu_pct")
                and r["events"].get("relay", {}).get("cpu_pct")
                else None
                for r in runs
            ]
            summary[f"events.{key}.per_cpu_ratio"] = _median(per_cpu_ratios)
        holds = [r["hold"][key] for r in runs if r.get("hold", {}).get(key)]
        for metric in ("held", "rss_per_stream_kb", "fds_peak", "peak_open", "errors", "streams"):
            summary[f"hold.{key}.{metric}"] = _median([h.get(metric) for h in holds])
        summary[f"hold.{key}.tried"] = [h["attempts"][0]["streams"] for h in holds]
        summary[f"hold.{key}.first_errors"] = [h["attempts"][0]["errors"] for h in holds]
    return summary


def _errors(summary: dict[str, Any], prefix: str) -> str:
    count = summary.get(f"{prefix}.errors") or 0
    return f" ({count} err)" if count else ""


def table(summary: dict[str, Any], plan: Plan) -> list[str]:
    keys = ["relay", *plan.modes]
    header = ["figure", *(LABELS[k] for k in keys), "target", "met"]
    rows: list[list[str]] = []

    def met(flags: list[bool | None]) -> str:
        return " / ".join("—" if f is None else ("yes" if f else "**no**") for f in flags)

    for level in plan.levels if "ttfb" in plan.scenarios else ():
        s = f"ttfb@{level}"
        cells = []
        for key in keys:
            p50, p99 = summary.get(f"{s}.{key}.ttfb_p50"), summary.get(f"{s}.{key}.ttfb_p99")
            errors = summary.get(f"{s}.{key}.errors") or 0
            text = f"{_fmt(p50)} / {_fmt(p99)}"
            if errors:
                text += f" ({errors} err)"
            cells.append(text)
        rows.append([f"TTFB p50 / p99 ms, {level} stream(s)", *cells, "", ""])
        extras = ["—"]
        flags: list[bool | None] = []
        for key in keys[1:]:
            e50 = summary.get(f"{s}.{key}.ttfb_p50_extra")
            e99 = summary.get(f"{s}.{key}.ttfb_p99_extra")
            extras.append(f"{_fmt(e50, 1, True)} / {_fmt(e99, 1, True)}")
            if level == 100:
                flags.append(
                    None
                    if e50 is None or e99 is None
                    else e50 <= 5 and e99 <= 25 and not summary.get(f"{s}.{key}.errors")
                )
        target = "≤ +5 / ≤ +25 ms" if level == 100 else ""
        rows.append(["  extra over bare relay, ms", *extras, target, met(flags) if flags else ""])
        rows.append(
            [
                "  streams done/s, server CPU %",
                *(
                    f"{_fmt(summary.get(f'{s}.{k}.streams_s'))}, "
                    f"{_fmt(summary.get(f'{s}.{k}.cpu_pct'))} %"
                    for k in keys
                ),
                "",
                "",
            ]
        )
    if any(summary.get(f"starts.{k}.streams_s") is not None for k in keys):
        rows.append(
            [
                "stream starts/s (3-token answers, pace 0)",
                *(
                    _fmt(summary.get(f"starts.{k}.streams_s"))
                    + (
                        f" ({summary[f'starts.{k}.errors']} err)"
                        if summary.get(f"starts.{k}.errors")
                        else ""
                    )
                    for k in keys
                ),
                "",
                "",
            ]
        )
    if any(summary.get(f"events.{k}.events_s") is not None for k in keys):
        rows.append(
            [
                "events/s relayed (pace 0)",
                *(_fmt(summary.get(f"events.{k}.events_s")) for k in keys),
                "",
                "",
            ]
        )
        ratios = [summary.get(f"events.{k}.ratio") for k in keys[1:]]
        rows.append(
            [
                "  ratio to bare relay",
                "1.00",
                *(_fmt(r, 2) for r in ratios),
                "≥ 0.70",
                met([None if r is None else r >= 0.7 for r in ratios]),
            ]
        )
        rows.append(
            [
                "  server CPU, % of a core",
                *(_fmt(summary.get(f"events.{k}.cpu_pct")) for k in keys),
                "",
                "",
            ]
        )
        rows.append(
            [
                "  events per server CPU-second (ratio)",
                _fmt(summary.get("events.relay.per_cpu_s")),
                *(
                    f"{_fmt(summary.get(f'events.{k}.per_cpu_s'))} "
                    f"({_fmt(summary.get(f'events.{k}.per_cpu_ratio'), 2)})"
                    for k in keys[1:]
                ),
                "",
                "",
            ]
        )
    if any(summary.get(f"hold.{k}.streams") is not None for k in keys):
        cells = []
        for key in keys:
            held = summary.get(f"hold.{key}.held")
            tried = summary.get(f"hold.{key}.tried") or []
            first_errors = summary.get(f"hold.{key}.first_errors") or []
            text = _fmt(held) if held is not None else "none"
            if tried and (first_errors[0] or 0):
                text += f" ({_fmt(tried[0])}: {first_errors[0]} err)"
            cells.append(text)
        rows.append(
            [
                "streams held by one process, 0 errors",
                *cells,
                f"{plan.hold_streams:,}",
                met(
                    [
                        None
                        if summary.get(f"hold.{k}.streams") is None
                        else (summary.get(f"hold.{k}.held") or 0) >= plan.hold_streams
                        for k in keys[1:]
                    ]
                ),
            ]
        )
        rows.append(
            [
                "  RSS per open stream, KB",
                *(_fmt(summary.get(f"hold.{k}.rss_per_stream_kb")) for k in keys),
                "",
                "",
            ]
        )
        rows.append(
            [
                "  server fds at the peak",
                *(_fmt(summary.get(f"hold.{k}.fds_peak")) for k in keys),
                "≤ 20,000",
                "",
            ]
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    return lines


def diagnosis(runs: list[dict[str, dict[str, Metrics]]]) -> list[str]:
    """The probe's timers per scenario (last run): count, p50, p99 and busy seconds per second."""
    lines: list[str] = []
    for scenario, by_target in runs[-1].items():
        for key, metrics in by_target.items():
            report = metrics.get("probe")
            if not report:
                continue
            window = metrics.get("window_s") or 1.0
            streams = max(1.0, (metrics.get("streams_s") or 0) * window)
            lines += [
                "",
                f"Diagnosis, {scenario}, {LABELS[key]} ({streams:.0f} streams finished in the "
                f"{window:.0f} s window; times in ms; 'per s' = summed time / window):",
                "",
                "| timer | count | per stream | p50 | p99 | max | per s |",
                "|---|---|---|---|---|---|---|",
            ]
            for name, row in report.items():
                lines.append(
                    f"| {name} | {row['n']} | {row['n'] / streams:.2f} | {row['p50']:.2f} | "
                    f"{row['p99']:.2f} | {row['max']:.1f} | {row['total_s'] / window:.2f} |"
                )
    return lines


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{platform.platform()}, {psutil.cpu_count()} CPUs, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, "
        f"fd limit {_fd_limit()}, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
    )


def revision() -> str:
    """The checkout measured: commit, and whether conduit/ has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "conduit"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' + uncommitted changes in conduit/' if dirty else ''}"


def _fd_limit() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- main ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    def interrupt(signum: int, _: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1 run, short windows, 2,000 held")
    parser.add_argument("--mode", choices=("embedded", "distributed", "both"), default="both")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--hold-runs", type=int, default=None, help="runs that also hold (1)")
    parser.add_argument("--hold-streams", type=int, default=None)
    parser.add_argument("--hold-rate", type=float, default=None, help="streams opened per s")
    parser.add_argument("--no-hold-search", action="store_true")
    parser.add_argument("--levels", default=None, help="comma-separated, e.g. 1,100,1000")
    parser.add_argument("--pace-ms", type=float, default=None)
    parser.add_argument("--words", type=int, default=None)
    parser.add_argument("--window", type=float, default=None)
    parser.add_argument("--only", default=None, help="scenarios: ttfb,starts,events,hold")
    parser.add_argument(
        "--quiet-below",
        type=float,
        default=25.0,
        help="before each run, wait for the CPU pressure (PSI avg10, %%) to drop below this",
    )
    parser.add_argument("--quiet-wait", type=float, default=300.0, help="... for at most (s)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (server logs)")
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="time Conduit's transactions, threads and loop (bench/_conduit_probe.py)",
    )
    args = parser.parse_args(argv)

    plan = QUICK if args.quick else Plan()
    overrides: dict[str, Any] = {
        "modes": ("embedded", "distributed") if args.mode == "both" else (args.mode,)
    }
    for name in ("runs", "hold_runs", "hold_streams", "hold_rate", "pace_ms", "words", "window"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.levels:
        overrides["levels"] = tuple(int(x) for x in args.levels.split(","))
    if args.only:
        overrides["scenarios"] = tuple(args.only.split(","))
    if args.no_hold_search:
        overrides["hold_search"] = False
    if args.diagnose:
        overrides["diagnose"] = True
    plan = replace(plan, **overrides)

    stack = Stack(keep=args.keep)
    global WORKDIR
    WORKDIR = stack.dir
    runs: list[dict[str, dict[str, Metrics]]] = []
    status = 0
    code = revision()
    log(f"work dir {stack.dir}; code {code}; machine: {machine()}")
    try:
        with _signals_raise():
            upstream = start_upstream(stack)
            sites = {mode: prepare_site(stack, mode, upstream) for mode in plan.modes}
            for run in range(plan.runs):
                wait_quiet(args.quiet_below, args.quiet_wait)
                log(f"run {run + 1}/{plan.runs}")
                runs.append(run_once(stack, plan, sites, upstream, run < plan.hold_runs))
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        status = 130
    except Exception as error:
        log(f"failed: {type(error).__name__}: {error} (logs in {stack.dir})")
        stack.keep = True
        status = 1
    finally:
        stack.close()
    if not runs:
        return status or 1
    summary = summarize(runs, plan)
    print(f"\nMachine: {machine()}; code: {code}")
    print(
        f"Medians of {len(runs)} run(s); hold from {min(plan.hold_runs, len(runs))} run(s). "
        f"TTFB: pace {plan.pace_ms:.0f} ms, {plan.words + 2}-token answers, closed loop, "
        f"{plan.window:.0f} s window; events: pace 0, {plan.events_words + 2}-token answers, "
        f"{plan.events_concurrency} streams; hold: {plan.hold_streams:,} streams, "
        f"≤ {plan.hold_rate:.0f}/s, ≤ {plan.hold_pending} awaiting headers, a token every "
        f"{plan.hold_pace_ms / 1000:.0f} s, held {plan.hold_full:.0f} s.\n"
    )
    print("\n".join(table(summary, plan)))
    notes = []
    for run_index, result in enumerate(runs, 1):
        for scenario, by_target in result.items():
            for key, metrics in by_target.items():
                for sample in metrics.get("error_samples") or []:
                    notes.append(f"- run {run_index} {scenario} {key}: {sample}")
                    break
    if notes:
        print("\nFirst error of each failing scenario:\n" + "\n".join(notes[:20]))
    pressure = [
        m.get("cpu_pressure_pct")
        for r in runs
        for by_target in r.values()
        for m in by_target.values()
        if m.get("cpu_pressure_pct") is not None
    ]
    if pressure:
        print(
            f"\nCPU pressure (PSI 'some': share of the time a task waited for a CPU) over the "
            f"windows: median {statistics.median(pressure):.0f} %, max {max(pressure):.0f} %."
        )
    if plan.diagnose:
        print("\n".join(diagnosis(runs)))
    if args.json:
        args.json.write_text(json.dumps({"plan": plan.__dict__, "summary": summary, "runs": runs}))
    return status


if __name__ == "__main__":
    sys.exit(main())
