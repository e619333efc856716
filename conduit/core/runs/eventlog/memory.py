"""The in-process EventLog: every run's events in a list, for one process (embedded mode).

Thread-safe: a runner may append from a worker thread with its own event loop while readers
await on the API's loop. Each waiting reader parks a future of its *own* loop, and appends wake
it with `loop.call_soon_threadsafe` (an `asyncio.Condition` would be bound to a single loop).

Memory is bounded three ways: a closed run is forgotten `retention` seconds after `close()`
(checked lazily on access, plus a bounded sweep on create and close); at most `max_runs` runs
are held (the oldest closed run is evicted first, else the open run idle the longest, which is
most likely abandoned); and a run holds at most `max_events_per_run` events. Appending beyond
that raises `EventLogFull` rather than dropping events: a runner must never lose them silently,
so it should end the run (e.g. `close()` it after logging) when it sees the error.
"""

from __future__ import annotations

import asyncio
import asyncio.events as asyncio_events
import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import orjson

from conduit.core.runs.eventlog.base import RunNotFound, follow_by_reading
from conduit.core.runs.events import Frames, RunEvent
from conduit.errors import ConduitError, Conflict

# Expired runs removed per create/close call, so a sweep never stalls an append.
_SWEEP_BATCH = 64
# Events handed to a reader per lock acquisition, so a long replay does not block the writer.
_READ_BATCH = 512
# Events joined into one chunk per lock acquisition (joining costs little per event).
_JOIN_BATCH = 4096

T = TypeVar("T")


class _Nothing:
    """What `_read` returns after waiting in vain (None means the end of a closed run)."""


_NOTHING: Final = _Nothing()

_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


class EventLogFull(ConduitError):
    default_message = "The run produced more events than its log may hold."


class RunClosed(Conflict):
    default_message = "The run's event log is already closed."


@dataclass(eq=False)
class _Run:
    """One run's events as two parallel lists: event N's SSE frame at `frames[N - 1]`, its name
    at `names[N - 1]`. Bytes and (interned) names are not tracked by the garbage collector,
    while a RunEvent object is: a log holding every event of the retention time as objects made
    the collector walk them all, over and over (8-15 % of a busy server's CPU). A reader gets
    RunEvents built for its batch, which die young."""

    meta: dict[str, str]
    frames: list[bytes] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    closed_at: float | None = None
    waiters: list[_Waiter] = field(default_factory=list)

    def keep(self, records: Sequence[RunEvent]) -> None:
        """Keep consecutive events that continue this run's numbering."""
        if len(records) == 1:
            self.frames.append(records[0].frame)
            self.names.append(records[0].event)
        else:
            self.frames += [record.frame for record in records]
            self.names += [record.event for record in records]

    def batch(self, task_id: str, cursor: int) -> list[RunEvent]:
        """Events with seq > `cursor`, at most `_READ_BATCH` of them."""
        frames = self.frames[cursor : cursor + _READ_BATCH]
        names = self.names[cursor : cursor + len(frames)]
        seqs = range(cursor + 1, cursor + 1 + len(frames))
        return [
            RunEvent(task_id, seq, name, frame)
            for seq, name, frame in zip(seqs, names, frames, strict=True)
        ]

    def joined(self, cursor: int) -> Frames | None:
        """The frames of the events with seq > `cursor` as one chunk (None when there are
        none): what a stream sends, without an object per event."""
        frames = self.frames[cursor : cursor + _JOIN_BATCH]
        if not frames:
            return None
        return Frames(cursor + len(frames), b"".join(frames))


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _wake(waiters: list[_Waiter]) -> None:
    if not waiters:
        return
    current = asyncio_events._get_running_loop()
    for loop, future in waiters:
        if loop is current:
            _resolve(future)  # a reader on this very loop: no cross-thread wake-up needed
            continue
        # A RuntimeError means that reader's loop is closed: nobody is left to wake.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve, future)


class MemoryEventLog:
    """EventLog for one process; see the module docstring for its bounds."""

    def __init__(
        self,
        retention: float = 600,
        max_events_per_run: int = 100_000,
        max_runs: int = 10_000,
    ) -> None:
        self._retention = retention
        self._max_events = max_events_per_run
        self._max_runs = max_runs
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}
        # Open runs, least recently appended first; closed runs in close (hence expiry) order.
        self._open: OrderedDict[str, None] = OrderedDict()
        self._closed: OrderedDict[str, None] = OrderedDict()

    async def create(
        self, task_id: str, *, meta: dict[str, str] | None = None, written_here: bool = True
    ) -> None:
        """Open the log of a new run (idempotent: a second call merges `meta`). One process
        reads and writes it: where it is written does not matter here."""
        to_wake: list[_Waiter] = []
        with self._lock:
            now = time.monotonic()
            to_wake += self._sweep(now)
            run = self._live_run(task_id, now, to_wake)
            if run is not None:
                run.meta.update(meta or {})
            else:
                while len(self._runs) >= self._max_runs:
                    victim = next(iter(self._closed or self._open))
                    to_wake += self._forget(victim)
                self._runs[task_id] = _Run(meta=dict(meta or {}))
                self._open[task_id] = None
        _wake(to_wake)

    async def append(self, task_id: str, event: str, payload: dict[str, Any] | bytes) -> RunEvent:
        """Append the next event; raises RunNotFound, RunClosed or EventLogFull."""
        return self._extend(task_id, event, [payload])[0]

    async def extend(
        self, task_id: str, event: str, payloads: Sequence[dict[str, Any] | bytes]
    ) -> list[RunEvent]:
        """Append the next events, all or none; raises like `append`."""
        return self._extend(task_id, event, payloads)

    async def take_over(
        self, task_id: str, events: Sequence[tuple[str, dict[str, Any] | bytes]]
    ) -> list[RunEvent]:
        """`append` each: this log is where its writer's events land at once, none ahead."""
        return [self._extend(task_id, event, [payload])[0] for event, payload in events]

    def _extend(
        self, task_id: str, event: str, payloads: Sequence[dict[str, Any] | bytes]
    ) -> list[RunEvent]:
        # What a Redis reader would see, detached from the caller's dicts.
        datas = [p if isinstance(p, bytes) else orjson.dumps(p) for p in payloads]
        to_wake: list[_Waiter] = []
        with self._lock:
            run = self._live_run(task_id, time.monotonic(), to_wake)
            if run is None:
                _wake(to_wake)
                raise RunNotFound()
            if run.closed_at is not None:
                raise RunClosed()
            first = len(run.frames) + 1
            if first - 1 + len(datas) > self._max_events:
                raise EventLogFull(limit=self._max_events)
            records = [
                RunEvent.from_data(task_id, first + i, event, data) for i, data in enumerate(datas)
            ]
            run.keep(records)
            self._open.move_to_end(task_id)
            to_wake += run.waiters
            run.waiters = []
        _wake(to_wake)
        return records

    def add(self, records: Sequence[RunEvent]) -> bool:
        """Keep events of one run numbered elsewhere (this log mirrors another one), all or
        none: False, and nothing kept, when they do not continue the run's numbering or the
        run is unknown or closed."""
        if not records:
            return True
        task_id = records[0].task_id
        to_wake: list[_Waiter] = []
        with self._lock:
            run = self._live_run(task_id, time.monotonic(), to_wake)
            added = (
                run is not None and run.closed_at is None and records[0].seq == len(run.frames) + 1
            )
            if run is not None and added:
                run.keep(records)
                self._open.move_to_end(task_id)
                to_wake += run.waiters
                run.waiters = []
        _wake(to_wake)
        return added

    def forget(self, task_id: str) -> None:
        """Drop the run now (unknown runs are ignored); its readers end on their next look."""
        to_wake: list[_Waiter] = []
        with self._lock:
            if task_id in self._runs:
                to_wake += self._forget(task_id)
        _wake(to_wake)

    async def release(self, task_id: str) -> None:
        """One process holds the log: whoever took the run over appends to this same one."""

    async def close(self, task_id: str) -> None:
        """End the run's log (idempotent; unknown runs are ignored); retention starts now."""
        to_wake: list[_Waiter] = []
        with self._lock:
            now = time.monotonic()
            run = self._live_run(task_id, now, to_wake)
            if run is not None and run.closed_at is None:
                run.closed_at = now
                self._open.pop(task_id, None)
                self._closed[task_id] = None
                to_wake += run.waiters
                run.waiters = []
            to_wake += self._sweep(now)
        _wake(to_wake)

    async def meta(self, task_id: str) -> dict[str, str] | None:
        """The metadata given to create(), or None for an unknown or expired run."""
        to_wake: list[_Waiter] = []
        with self._lock:
            run = self._live_run(task_id, time.monotonic(), to_wake)
            result = None if run is None else dict(run.meta)
        _wake(to_wake)
        return result

    async def read(self, task_id: str, *, after: int, wait: float) -> list[RunEvent] | None:
        """Events with seq > `after` (up to a batch); [] after `wait` s without any; None once
        the run is closed and read to its end; RunNotFound for an unknown run."""
        cursor = max(after, 0)
        got = await self._read(task_id, cursor, wait, lambda run: run.batch(task_id, cursor))
        return [] if isinstance(got, _Nothing) else got

    async def read_frames(self, task_id: str, *, after: int, wait: float) -> Frames | None:
        """`read()`, as the events' frames joined into one chunk."""
        cursor = max(after, 0)
        got = await self._read(task_id, cursor, wait, lambda run: run.joined(cursor))
        return Frames(cursor, b"") if isinstance(got, _Nothing) else got

    async def _read(
        self, task_id: str, cursor: int, wait: float, take: Callable[[_Run], T]
    ) -> T | _Nothing | None:
        """`take(run)` of what is there (falsy when nothing is); waits up to `wait` s for
        something. `_NOTHING` after waiting in vain, None at the end of a closed run."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] | None = None
        for attempt in range(2):
            to_wake: list[_Waiter] = []
            with self._lock:
                run = self._live_run(task_id, time.monotonic(), to_wake)
                if run is not None:
                    got = take(run)
                    if not got and run.closed_at is None and attempt == 0:
                        waiter = loop.create_future()
                        run.waiters.append((loop, waiter))
            _wake(to_wake)
            if run is None:
                raise RunNotFound()
            if got:
                return got
            if run.closed_at is not None:
                return None
            if waiter is None:
                return _NOTHING  # woken (or timed out) and still nothing: the caller pings
            timer = loop.call_later(wait, _resolve, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                # After a timeout or a cancel the future is still listed: do not leave it.
                self._drop_waiter(run, (loop, waiter))
            waiter = None
        return _NOTHING

    def follow(self, task_id: str, *, after: int = 0) -> AsyncIterator[RunEvent]:
        """Events with seq > `after`, live, until close; RunNotFound for an unknown run."""
        return follow_by_reading(self, task_id, after=after)

    async def aclose(self) -> None:
        """Nothing to release: the log lives in this process's memory."""

    def _drop_waiter(self, run: _Run, waiter: _Waiter) -> None:
        # A writer that woke the waiter took the whole list (it replaces `run.waiters`, never
        # edits it), so a waiter no longer listed needs no lock: the usual case, one per event.
        if waiter not in run.waiters:
            return
        with self._lock:
            if waiter in run.waiters:
                run.waiters.remove(waiter)

    # Helpers below run with self._lock held.

    def _live_run(self, task_id: str, now: float, to_wake: list[_Waiter]) -> _Run | None:
        run = self._runs.get(task_id)
        if run is not None and run.closed_at is not None and now - run.closed_at >= self._retention:
            to_wake += self._forget(task_id)
            return None
        return run

    def _sweep(self, now: float) -> list[_Waiter]:
        woken: list[_Waiter] = []
        for _ in range(_SWEEP_BATCH):
            oldest = next(iter(self._closed), None)
            if oldest is None:
                break
            closed_at = self._runs[oldest].closed_at
            if closed_at is None or now - closed_at < self._retention:
                break  # closed runs are in close order: the rest are younger still
            woken += self._forget(oldest)
        return woken

    def _forget(self, task_id: str) -> list[_Waiter]:
        run = self._runs.pop(task_id)
        self._open.pop(task_id, None)
        self._closed.pop(task_id, None)
        # Readers of an evicted open run must not wait forever; they end on their next look.
        return run.waiters
