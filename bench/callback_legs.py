"""Where an async run's callback time goes, leg by leg (distributed mode).

    .venv/bin/python bench/callback_legs.py          # 30 runs one at a time
    .venv/bin/python bench/callback_legs.py 60

The stack of `bench/async_runs.py` (fake upstream, `conduit serve`, `conduit worker`, a fresh
PostgreSQL database, its callback receiver): blocking runs first (the run's own time), then
async runs with a callback one at a time, 0.2 s apart. Each leg comes from the rows' own
timestamps (async task, both outbox rows, the delivery and its attempt; one clock, this
machine's) and the receiver's arrival time; the table gives each leg's median, min and max in
ms, and the callback's extra over the blocking run, as `async_runs.py`'s `callback` scenario
does.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.async_runs import ALLOW_LOOPBACK, Receiver, body_of, with_env
from bench.sse_streams import (
    Stack,
    machine,
    prepare_site,
    revision,
    start_conduit,
    start_upstream,
    stop_target,
    wait_quiet,
)

_EPOCHS = "extract(epoch from {})"


def _times(conn: psycopg.Connection, table: str, columns: str, where: str, arg: str) -> list[float]:
    """The columns (timestamps as unix seconds, or numbers) of the one row `where` finds."""
    wanted = ", ".join(_EPOCHS.format(c) if c.endswith("_at") else c for c in columns.split())
    row = conn.execute(f"select {wanted} from {table} where {where}", (arg,)).fetchone()
    assert row is not None, (table, where, arg)
    return [float(value) for value in row]


def legs_of(conn: psycopg.Connection, task_id: str, wall: float, total: float) -> dict[str, float]:
    """One callback's legs in seconds, from its rows' timestamps."""
    created, started, finished = _times(
        conn, "async_tasks", "created_at started_at finished_at", "id = %s", task_id
    )
    run_dispatched, run_started = _times(
        conn,
        "outbox",
        "dispatched_at started_at",
        "task = 'conduit.generation.run' and kwargs::text like %s",
        f"%{task_id}%",
    )
    (delivery_id,) = conn.execute(
        "select id from webhook_deliveries where task_id = %s", (task_id,)
    ).fetchone() or (None,)
    (delivery_created,) = _times(conn, "webhook_deliveries", "created_at", "id = %s", delivery_id)
    hook_dispatched, hook_started = _times(
        conn,
        "outbox",
        "dispatched_at started_at",
        "queue = 'webhook' and kwargs::text like %s",
        f"%{delivery_id}%",
    )
    attempt_started, attempt_ms = _times(
        conn, "webhook_attempts", "started_at duration_ms", "delivery_id = %s", delivery_id
    )
    return {
        "submit sent → task row written": created - wall,
        "task row → run's outbox row dispatched": run_dispatched - created,
        "dispatched → run's task started (broker, claim)": run_started - run_dispatched,
        "run's task started → run started": started - run_started,
        "the run (started → ended)": finished - started,
        "run ended → delivery row written": delivery_created - finished,
        "delivery row → webhook row dispatched": hook_dispatched - delivery_created,
        "dispatched → webhook task started (broker, claim)": hook_started - hook_dispatched,
        "webhook task started → attempt's POST started": attempt_started - hook_started,
        "the POST (as recorded)": attempt_ms / 1000,
        "total: submit sent → callback received": total,
    }


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    receiver = Receiver()
    receiver.start()
    stack = Stack(False)
    try:
        upstream = start_upstream(stack)
        site = with_env(prepare_site(stack, "distributed", upstream), dict(ALLOW_LOOPBACK))
        target = start_conduit(stack, site, upstream)
        try:
            wait_quiet(25, 60)
            upstream.pace(5)
            query = " ".join(f"w{n}" for n in range(20))  # as async_runs.py's callback scenario
            blocking = {**body_of(receiver, "blocking", query), "response_mode": "blocking"}
            blocking["callback_url"] = None
            sent: list[tuple[str, float, float]] = []
            headers = {"Authorization": f"Bearer {target.token}"}
            with httpx.Client(headers=headers, timeout=60) as client:
                own = []
                for _ in range(10):
                    started = time.monotonic()
                    client.post(target.url, json=blocking).raise_for_status()
                    own.append(time.monotonic() - started)
                for _ in range(count):
                    wall, started = time.time(), time.monotonic()
                    response = client.post(target.url, json=body_of(receiver, "callback", query))
                    task_id = response.json()["task_id"]
                    deadline = time.monotonic() + 30
                    while task_id not in receiver.arrived and time.monotonic() < deadline:
                        time.sleep(0.001)
                    sent.append((task_id, wall, receiver.arrived[task_id] - started))
                    time.sleep(0.2)
        finally:
            stop_target(stack, target)
        legs: dict[str, list[float]] = {}
        dsn = f"postgresql://postgres@127.0.0.1:5432/{site.database}"
        with psycopg.connect(dsn) as conn:
            for task_id, wall, total in sent:
                for name, seconds in legs_of(conn, task_id, wall, total).items():
                    legs.setdefault(name, []).append(seconds * 1000)
    finally:
        stack.close()
        receiver.stop()
    own_ms = statistics.median(own) * 1000
    print(f"code {revision()}; machine: {machine()}; {count} callbacks one at a time")
    print()
    print("| leg | p50 ms | min | max |")
    print("|---|---:|---:|---:|")
    for name, values in legs.items():
        print(
            f"| {name} | {statistics.median(values):.1f} | {min(values):.1f} | {max(values):.1f} |"
        )
    total = statistics.median(legs["total: submit sent → callback received"])
    print(f"| the run's own time (blocking) | {own_ms:.1f} | | |")
    print(f"| **extra over it** | **{total - own_ms:+.1f}** | | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
