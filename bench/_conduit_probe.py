"""`conduit serve` with timers around its start path (the SSE benchmark's `--diagnose`).

    python bench/_conduit_probe.py --report FILE serve --port N

Runs Conduit's own CLI in this process after installing timers (Conduit's code is unchanged):

- every SQLite/PostgreSQL transaction: how long `BEGIN` (SQLite: `BEGIN IMMEDIATE`, i.e. the
  wait for the database's one write lock) took, and how long the transaction then lasted until
  its COMMIT/ROLLBACK returned (the lock is held that long), by the Conduit function that opened
  it (`get_service_caller`, `_prepare_and_commit`, `_finish`, `update_conversation_stats`, ...);
- `asyncio.to_thread` calls: the wait for a free thread of the default executor, and the run;
- `asyncio.run_coroutine_threadsafe(...)` from a thread: the round trip through the event loop
  (`_prepare_and_commit` makes one while its transaction is open);
- the event loop's lag: a task asks to sleep 5 ms and records how late it wakes up.

SIGUSR1 writes the figures gathered since the last SIGUSR1 to FILE (JSON) and starts afresh.
With CONDUIT_PROBE_TRACEMALLOC=N in the environment, tracemalloc records N frames per allocation
and SIGUSR2 dumps a snapshot to FILE.<k>.snap (k = 1, 2, ...) for `Snapshot.load().compare_to()`.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

NAMES = (
    "get_service_caller",
    "_prepare_and_commit",
    "_finish",
    "update_conversation_stats",
    "resolve_key",
    "_end_user_id",
    "_loop",
)
_lock = threading.Lock()
_series: defaultdict[str, list[float]] = defaultdict(list)
_local = threading.local()


def note(name: str, seconds: float) -> None:
    with _lock:
        values = _series[name]
        if len(values) < 200_000:
            values.append(seconds * 1000)


def caller() -> str:
    frame = sys._getframe(2)
    first = None
    while frame is not None:
        code = frame.f_code
        if "/conduit/" in code.co_filename:
            if code.co_name in NAMES:
                return code.co_name
            first = first or code.co_name
        frame = frame.f_back
    return f"other:{first}"


def install_db_timers() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.engine.default import DefaultDialect

    @event.listens_for(Engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("BEGIN"):
            _local.begin = time.perf_counter()

    @event.listens_for(Engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("BEGIN"):
            now = time.perf_counter()
            who = caller()
            note(f"db.begin_wait.{who}", now - _local.begin)
            _local.txn = (who, now)

    @event.listens_for(Engine, "begin")
    def begin(conn: Any) -> None:
        # PostgreSQL: no BEGIN statement goes through the cursor; the transaction starts here.
        if conn.dialect.name != "sqlite":
            _local.txn = (caller(), time.perf_counter())

    def ending(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrapper(self: Any, dbapi_connection: Any) -> Any:
            try:
                return original(self, dbapi_connection)
            finally:
                txn = getattr(_local, "txn", None)
                if txn is not None:
                    _local.txn = None
                    note(f"db.held.{txn[0]}", time.perf_counter() - txn[1])

        return wrapper

    DefaultDialect.do_commit = ending(DefaultDialect.do_commit)  # type: ignore[method-assign]
    DefaultDialect.do_rollback = ending(DefaultDialect.do_rollback)  # type: ignore[method-assign]


def install_asyncio_timers() -> None:
    original_to_thread = asyncio.to_thread

    async def to_thread(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        submitted = time.perf_counter()
        name = getattr(func, "__name__", "?")

        def timed() -> Any:
            started = time.perf_counter()
            note(f"to_thread.queue.{name}", started - submitted)
            try:
                return func(*args, **kwargs)
            finally:
                note(f"to_thread.run.{name}", time.perf_counter() - started)

        return await original_to_thread(timed)

    asyncio.to_thread = to_thread

    original_threadsafe = asyncio.run_coroutine_threadsafe

    def run_coroutine_threadsafe(coro: Any, loop: asyncio.AbstractEventLoop) -> Any:
        submitted = time.perf_counter()
        name = getattr(coro, "__qualname__", "?")
        future = original_threadsafe(coro, loop)
        future.add_done_callback(
            lambda _: note(f"loop_roundtrip.{name}", time.perf_counter() - submitted)
        )
        return future

    asyncio.run_coroutine_threadsafe = run_coroutine_threadsafe  # type: ignore[assignment]


async def lag_probe() -> None:
    while True:
        asked = time.perf_counter()
        await asyncio.sleep(0.005)
        note("loop_lag", time.perf_counter() - asked - 0.005)


def install_lag_probe() -> None:
    from conduit.api import app as app_module

    original = app_module.create_app

    def create_app(*args: Any, **kwargs: Any) -> Any:
        application = original(*args, **kwargs)
        lifespan = application.router.lifespan_context

        def wrapped(app: Any) -> Any:
            context = lifespan(app)

            class Context:
                async def __aenter__(self) -> Any:
                    self.task = asyncio.get_running_loop().create_task(lag_probe())
                    return await context.__aenter__()

                async def __aexit__(self, *exc: Any) -> Any:
                    self.task.cancel()
                    return await context.__aexit__(*exc)

            return Context()

        application.router.lifespan_context = wrapped
        return application

    app_module.create_app = create_app


def summary() -> dict[str, Any]:
    with _lock:
        series = {k: list(v) for k, v in _series.items()}
        _series.clear()
    out: dict[str, Any] = {}
    for name, values in sorted(series.items()):
        values.sort()
        n = len(values)
        out[name] = {
            "n": n,
            "mean": sum(values) / n,
            "p50": values[n // 2],
            "p99": values[min(n - 1, int(n * 0.99))],
            "max": values[-1],
            "total_s": sum(values) / 1000,
        }
    return out


def main() -> None:
    args = sys.argv[1:]
    if len(args) < 2 or args[0] != "--report":
        raise SystemExit(__doc__)
    report = Path(args[1])
    install_db_timers()
    install_asyncio_timers()
    install_lag_probe()
    signal.signal(signal.SIGUSR1, lambda *_: report.write_text(json.dumps(summary())))
    frames = int(os.environ.pop("CONDUIT_PROBE_TRACEMALLOC", "0") or 0)
    if frames:
        import tracemalloc

        tracemalloc.start(frames)
        numbers = itertools.count(1)
        signal.signal(
            signal.SIGUSR2,
            lambda *_: tracemalloc.take_snapshot().dump(f"{report}.{next(numbers)}.snap"),
        )
    from conduit.cli import main as conduit_main

    conduit_main(args[2:])


if __name__ == "__main__":
    main()
