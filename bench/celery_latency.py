"""Celery enqueue→start latency and idle CPU: Conduit's embedded mode against the alternatives.

    .venv/bin/python bench/celery_latency.py            # 3 runs, 300 samples, 10 s idle window
    .venv/bin/python bench/celery_latency.py --quick    # 1 run, 60 samples, 3 s idle window

Every scenario runs in a fresh subprocess (kombu's in-memory transports keep class-level state):

- `embedded`: Conduit's embedded mode as `conduit serve` builds it: `create_celery(settings)` with
  no broker URL (the wake-on-publish `conduit-memory://` transport) and `EmbeddedWorker`
  (thread pool, `CONDUIT_TASKS_EMBEDDED_CONCURRENCY` threads, no beat) in the same process.
- `memory-10ms`, `memory-20ms`: the same app and worker on kombu's stock `memory://` transport,
  `memory.Transport.polling_interval` set on the class to 0.01 / 0.02 s.
- `sqlite-100ms`: the same app and worker on kombu's SQLAlchemy transport over SQLite in WAL
  mode (`creator` transport option), `sqlalchemy.Transport.polling_interval` = 0.1 s.
- `distributed`: Redis broker `redis://127.0.0.1:6379/15` (flushed first) and a separate
  `conduit worker -I bench._tasks -c 4 --pool threads` process; skipped when Redis does not answer.

Tasks are sent the way the outbox relay sends them (`conduit.tasks.celery_app.publisher`) to the
`ops` queue. The task (`bench._tasks.record`) notes when it starts; latency is measured from just
before the publish call to that moment. Measured per scenario:

- back-to-back: each task is sent as soon as the previous one has started;
- random gap: after the previous start, wait a uniform random 0-20 ms, then send;
- burst: 40 tasks of 20 ms each sent at once; time from the first send to the last start
  (a 4-thread worker needs ≥ 180 ms: 10 waves of 20 ms, the last one starting at 180 ms);
- idle CPU: CPU time of the worker's process over a quiet window, as % of one core.

The figures printed are medians over the runs.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import platform
import queue
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # so that `bench._tasks` and `conduit` import from the checkout

REDIS_URL = "redis://127.0.0.1:6379/15"  # database 15 is reserved for benchmarks
CONDUIT = str(Path(sys.executable).parent / "conduit")
QUEUE = "ops"
WARMUP = 20
MAX_GAP = 0.020  # seconds; upper bound of the random gap between a start and the next send
BURST_TASKS = 40
BURST_WORK = 0.020  # seconds each burst task sleeps
START_TIMEOUT = 30.0
SETTLE = 1.0  # seconds of quiet before the idle CPU window opens

# (task name, kwargs, queue, task id, headers) -> None: `conduit.tasks.celery_app.publisher`.
Publish = Callable[[str, dict[str, Any], str, str, dict[str, Any]], None]
Result = dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    target: str
    p50_target_ms: float
    cpu_target_pct: float | None


EMBEDDED_TARGET = "p50 ≤ 20 ms, idle ≤ 2 %"
SCENARIOS = (
    Scenario("embedded", "embedded: conduit-memory (wake on publish)", EMBEDDED_TARGET, 20.0, 2.0),
    Scenario("memory-10ms", "kombu memory://, polling 0.01 s", EMBEDDED_TARGET, 20.0, 2.0),
    Scenario("memory-20ms", "kombu memory://, polling 0.02 s", EMBEDDED_TARGET, 20.0, 2.0),
    Scenario("sqlite-100ms", "kombu sqla+sqlite (WAL), polling 0.1 s", EMBEDDED_TARGET, 20.0, 2.0),
    Scenario("distributed", "distributed: Redis db 15 + conduit worker", "p50 ≤ 5 ms", 5.0, None),
)
BY_KEY = {scenario.key: scenario for scenario in SCENARIOS}


# --- measuring (inside a scenario's subprocess) --------------------------------------------------


class Probe:
    """Sends `bench.record` tasks and reads back when they started, on one clock."""

    def __init__(
        self, publish: Publish, next_start: Callable[[float], tuple[int, float, float]], wall: bool
    ) -> None:
        self._publish = publish
        self._next_start = next_start
        self._wall = wall  # a separate worker process: compare time.time(), not perf_counter()
        self.now: Callable[[], float] = time.time if wall else time.perf_counter

    def send(self, seq: int, work: float = 0.0) -> float:
        """Publish one task; returns the moment just before the publish call."""
        task_id = uuid.uuid4().hex
        sent = self.now()
        self._publish("bench.record", {"seq": seq, "work": work}, QUEUE, task_id, {})
        return sent

    def started(self, timeout: float = START_TIMEOUT) -> tuple[int, float]:
        """(seq, start time) of the next task that started."""
        seq, perf, wall = self._next_start(timeout)
        return seq, wall if self._wall else perf


def _latencies(
    probe: Probe, seqs: Iterator[int], count: int, gap: Callable[[], float]
) -> list[float]:
    found: list[float] = []
    for _ in range(count):
        pause = gap()
        if pause > 0:
            time.sleep(pause)
        seq = next(seqs)
        sent = probe.send(seq)
        started_seq, started = probe.started()
        if started_seq != seq:
            raise RuntimeError(f"expected task {seq} to start, got {started_seq}")
        found.append((started - sent) * 1000)
    return found


def _burst(probe: Probe, seqs: Iterator[int]) -> float:
    numbers = [next(seqs) for _ in range(BURST_TASKS)]
    first = min(probe.send(seq, BURST_WORK) for seq in numbers)
    starts = dict(probe.started() for _ in numbers)
    if sorted(starts) != numbers:
        raise RuntimeError("the burst's tasks did not all start")
    return (max(starts.values()) - first) * 1000


def _idle_cpu_pct(cpu_seconds: Callable[[], float], window: float) -> float:
    time.sleep(SETTLE)
    cpu_before, wall_before = cpu_seconds(), time.perf_counter()
    time.sleep(window)
    return (cpu_seconds() - cpu_before) / (time.perf_counter() - wall_before) * 100


def _percentile(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def _measure(
    probe: Probe, samples: int, idle: float, seed: int, cpu_seconds: Callable[[], float]
) -> Result:
    rng = random.Random(seed)
    seqs = itertools.count()
    _latencies(probe, seqs, WARMUP, lambda: 0.0)
    back_to_back = _latencies(probe, seqs, samples, lambda: 0.0)
    random_gap = _latencies(probe, seqs, samples, lambda: rng.uniform(0.0, MAX_GAP))
    burst_ms = _burst(probe, seqs)
    idle_pct = _idle_cpu_pct(cpu_seconds, idle)
    return {
        "b2b_p50": _percentile(back_to_back, 50),
        "b2b_p99": _percentile(back_to_back, 99),
        "rand_p50": _percentile(random_gap, 50),
        "rand_p99": _percentile(random_gap, 99),
        "burst_ms": burst_ms,
        "idle_cpu": idle_pct,
    }


def _own_cpu() -> float:
    """CPU seconds of this process, every thread, at microsecond resolution."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_of(pid: int) -> Callable[[], float]:
    """CPU seconds of another process: its threads' schedstat (ns) on Linux, else psutil (ticks)."""
    threads = Path(f"/proc/{pid}/task")
    if (threads.parent / "schedstat").exists():

        def from_schedstat() -> float:
            total = 0
            for thread in threads.iterdir():
                with contextlib.suppress(OSError, ValueError, IndexError):  # the thread ended
                    total += int((thread / "schedstat").read_text().split()[0])
            return total / 1e9

        return from_schedstat

    import psutil

    process = psutil.Process(pid)

    def from_psutil() -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    return from_psutil


def _conduit_env(data_dir: Path, broker: str | None) -> None:
    """A clean CONDUIT_* environment: only what the scenario needs."""
    for name in [name for name in os.environ if name.startswith("CONDUIT_")]:
        del os.environ[name]
    os.environ["CONDUIT_DATA_DIR"] = str(data_dir)
    os.environ["CONDUIT_LOG_LEVEL"] = "WARNING"
    if broker:
        os.environ["CONDUIT_BROKER_URL"] = broker


def _wal_connection(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def _use_transport(app: Any, key: str, workdir: Path) -> None:
    """Swap the embedded broker for a comparison transport (polling set on the class)."""
    if key == "embedded":
        return
    if key.startswith("memory-"):
        from kombu.transport import memory

        memory.Transport.polling_interval = {"memory-10ms": 0.01, "memory-20ms": 0.02}[key]
        app.conf.broker_url = "memory://localhost//"
    elif key == "sqlite-100ms":
        import kombu.transport.sqlalchemy as ksa

        ksa.Transport.polling_interval = 0.1
        path = workdir / "broker.db"
        app.conf.broker_url = f"sqla+sqlite:///{path}"
        # Passed through to create_engine(); a `polling_interval` option here would crash it.
        app.conf.broker_transport_options = {"creator": functools.partial(_wal_connection, path)}
    else:
        raise ValueError(f"unknown in-process scenario {key!r}")


def run_in_process(key: str, samples: int, idle: float, seed: int) -> Result:
    with tempfile.TemporaryDirectory(prefix="conduit-bench-") as tmp:
        workdir = Path(tmp)
        _conduit_env(workdir, broker=None)
        from bench import _tasks  # registers bench.record before the worker starts
        from conduit.infra.settings import load_settings
        from conduit.tasks.celery_app import create_celery, publisher
        from conduit.tasks.embedded import EmbeddedWorker

        settings = load_settings()
        app = create_celery(settings)
        _use_transport(app, key, workdir)
        worker = EmbeddedWorker(
            app,
            concurrency=settings.tasks.embedded_concurrency,
            schedule_path=workdir / "beat-schedule",
            beat=False,
        )
        worker.start()
        try:

            def next_start(timeout: float) -> tuple[int, float, float]:
                try:
                    return _tasks.STARTS.get(timeout=timeout)
                except queue.Empty:
                    raise RuntimeError(f"no task started within {timeout:.0f} s") from None

            probe = Probe(publisher(app), next_start, wall=False)
            result = _measure(probe, samples, idle, seed, _own_cpu)
        finally:
            worker.stop()
        result["transport"] = str(app.conf.broker_url).split("://", 1)[0]
        result["concurrency"] = settings.tasks.embedded_concurrency
        return result


def run_distributed(samples: int, idle: float, seed: int) -> Result:
    import redis

    from bench._tasks import REDIS_ENV, RESULTS_KEY

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=10)
    try:
        client.ping()
    except redis.RedisError as error:
        return {"skipped": f"Redis at {REDIS_URL} did not answer ({error})"}
    client.flushdb()
    with tempfile.TemporaryDirectory(prefix="conduit-bench-") as tmp:
        workdir = Path(tmp)
        _conduit_env(workdir, broker=REDIS_URL)
        from conduit.infra.settings import load_settings
        from conduit.tasks.celery_app import create_celery, publisher

        python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, REDIS_ENV: REDIS_URL, "PYTHONPATH": python_path}
        log_path = workdir / "worker.log"
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [CONDUIT, "worker", "-I", "bench._tasks", "-c", "4", "--pool", "threads"],
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:

            def next_start(timeout: float) -> tuple[int, float, float]:
                found = client.blpop([RESULTS_KEY], timeout=timeout)
                if found is None:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"no task started in {timeout:.0f} s; worker log:\n{tail}")
                seq, perf, wall = json.loads(found[1])
                return int(seq), float(perf), float(wall)

            app = create_celery(load_settings())
            probe = Probe(publisher(app), next_start, wall=True)
            probe.send(-1)  # waits in Redis until the worker is up
            probe.started(timeout=60.0)
            result = _measure(probe, samples, idle, seed, _cpu_of(worker.pid))
        finally:
            worker.terminate()
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(5)
            client.flushdb()
        result["transport"] = "redis"
        result["concurrency"] = 4
        return result


def run_scenario(key: str, samples: int, idle: float, seed: int) -> Result:
    if key == "distributed":
        return run_distributed(samples, idle, seed)
    return run_in_process(key, samples, idle, seed)


# --- orchestrating (the parent process) ----------------------------------------------------------


def _child(key: str, samples: int, idle: float, seed: int, timeout: float) -> Result:
    command = [sys.executable, str(Path(__file__).resolve()), "--scenario", key]
    command += ["--samples", str(samples), "--idle", str(idle), "--seed", str(seed)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return {"error": f"exit {done.returncode}: " + " | ".join(tail)}
    result: Result = json.loads(lines[-1])
    return result


def _flush_bench_redis() -> str | None:
    """Empty Redis database 15 before the run; the reason when Redis does not answer."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=5).flushdb()
    except redis.RedisError as error:
        return str(error)
    return None


def _machine() -> str:
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    from importlib.metadata import version

    return (
        f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, celery {version('celery')}, kombu {version('kombu')}"
    )


def _median(runs: list[Result], field: str) -> float:
    return statistics.median(float(run[field]) for run in runs)


def _fmt(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _table(results: dict[str, list[Result]]) -> list[str]:
    header = (
        "| scenario | back-to-back p50 / p99 ms | random gap p50 / p99 ms | "
        "burst 40x20 ms: last start ms (floor 180) | idle CPU % core | target | met |"
    )
    lines = [header, "|" + "---|" * 7]
    for key, runs in results.items():
        scenario = BY_KEY[key]
        good = [run for run in runs if "error" not in run and "skipped" not in run]
        if not good:
            first = runs[0] if runs else {}
            why = first.get("skipped") or first.get("error") or "not run"
            state = "skipped" if "skipped" in first else "failed"
            lines.append(f"| {scenario.label} | {state}: {why} | | | | {scenario.target} | - |")
            continue
        b50, b99 = _median(good, "b2b_p50"), _median(good, "b2b_p99")
        r50, r99 = _median(good, "rand_p50"), _median(good, "rand_p99")
        burst, cpu = _median(good, "burst_ms"), _median(good, "idle_cpu")
        met = b50 <= scenario.p50_target_ms and r50 <= scenario.p50_target_ms
        if scenario.cpu_target_pct is not None:
            met = met and cpu <= scenario.cpu_target_pct
        lines.append(
            f"| {scenario.label} | {_fmt(b50)} / {_fmt(b99)} | {_fmt(r50)} / {_fmt(r99)} | "
            f"{_fmt(burst)} | {cpu:.2f} | {scenario.target} | {'yes' if met else 'no'} |"
        )
    return lines


def _notes(results: dict[str, list[Result]]) -> list[str]:
    """Per-run spread, failures, and bursts that drain far slower than the pool allows."""
    floor_ms = (BURST_TASKS // 4 - 1) * BURST_WORK * 1000  # 4 threads in every scenario
    lines = []
    for key, runs in results.items():
        good = [run for run in runs if "b2b_p50" in run]
        if len(good) > 1:
            p50s = ", ".join(_fmt(run["b2b_p50"]) for run in good)
            cpus = ", ".join(f"{run['idle_cpu']:.2f}" for run in good)
            lines.append(f"  {key}: back-to-back p50 per run [{p50s}] ms; idle CPU [{cpus}] %")
        if good and _median(good, "burst_ms") > 3 * floor_ms:
            burst = _median(good, "burst_ms")
            lines.append(
                f"  {key}: WARNING the burst took {burst:.0f} ms, {burst / floor_ms:.0f}x the "
                f"{floor_ms:.0f} ms floor: queued tasks wait although pool threads are free"
            )
        bad = [run.get("error") for run in runs if "error" in run]
        if bad:
            lines.append(f"  {key}: {len(bad)} run(s) failed: {bad[0]}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1 run, 60 samples, 3 s idle window")
    parser.add_argument("--runs", type=int, default=3, help="runs of every scenario (default 3)")
    parser.add_argument("--samples", type=int, default=300, help="tasks per latency series")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of the idle CPU window")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random gaps")
    parser.add_argument(
        "--only", default=None, help="comma-separated scenarios (" + ", ".join(BY_KEY) + ")"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write every run here")
    parser.add_argument("--scenario", choices=sorted(BY_KEY), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.scenario:  # a child: one scenario, one JSON line on stdout
        print(json.dumps(run_scenario(args.scenario, args.samples, args.idle, args.seed)))
        return 0

    runs, samples, idle = args.runs, args.samples, args.idle
    if args.quick:
        runs, samples, idle = 1, 60, 3.0
    keys = args.only.split(",") if args.only else list(BY_KEY)
    unknown = [key for key in keys if key not in BY_KEY]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    redis_down = _flush_bench_redis() if "distributed" in keys else None

    results: dict[str, list[Result]] = {key: [] for key in keys}
    timeout = 120.0 + samples * 0.5 + idle
    for run in range(1, runs + 1):
        for key in keys:
            print(f"run {run}/{runs}: {key} ...", file=sys.stderr, flush=True)
            if key == "distributed" and redis_down:
                why = f"Redis at {REDIS_URL} did not answer ({redis_down})"
                results[key].append({"skipped": why})
                continue
            results[key].append(_child(key, samples, idle, args.seed + run, timeout))

    print(f"\nMachine: {_machine()}")
    print(
        f"Medians of {runs} run(s); {samples} tasks per latency series, "
        f"idle window {idle:g} s; one subprocess per scenario and run.\n"
    )
    print("\n".join(_table(results)))
    notes = _notes(results)
    if notes:
        print("\nNotes:\n" + "\n".join(notes))
    if args.json:
        args.json.write_text(json.dumps({"machine": _machine(), "results": results}, indent=2))
    failed = any("error" in run for runs_ in results.values() for run in runs_)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
