"""Early start: a run handed to its executor before its start has finished.

A run whose plan needs nothing from the database may start while its event log is being
created and its rows commit (`services/runs/start.py` decides, from the plan's `early` flag):
its model call then overlaps the rest of the start. Two gates keep that invisible: the run
writes to its log only once the log exists (`created`), and stores its result only once its
rows exist (`committed`). The lifecycle wraps the run's log and store in them; the app runner
never knows. A start that fails resolves both False and cancels the run, which then writes and
stores nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from conduit.core.runs.eventlog.base import EventLog
from conduit.core.runs.events import Frames, RunEvent
from conduit.core.runs.kinds import RunStore
from conduit.core.runs.spec import RunSpec


class StartAbandoned(Exception):
    """The run's start failed: there is no log to write to (the run is being cancelled)."""


@dataclass
class StartGates:
    """`created`: the run's log exists; `committed`: its rows exist. Each resolves True once
    so, or False when the start failed."""

    created: asyncio.Future[bool]
    committed: asyncio.Future[bool]

    @classmethod
    def new(cls) -> StartGates:
        loop = asyncio.get_running_loop()
        return cls(created=loop.create_future(), committed=loop.create_future())

    def log_created(self) -> None:
        self.created.set_result(True)

    def start_committed(self) -> None:
        self.committed.set_result(True)

    def fail(self) -> None:
        """The start failed: whatever has not passed its gate never will."""
        for gate in (self.created, self.committed):
            if not gate.done():
                gate.set_result(False)


async def passed(gate: asyncio.Future[bool]) -> bool:
    # Shielded: a cancelled run must not cancel the gate that other waiters share.
    return await asyncio.shield(gate)


class GatedLog:
    """The run's log, written only once it exists (`created`)."""

    def __init__(self, log: EventLog, created: asyncio.Future[bool]) -> None:
        self._log = log
        self._created = created
        self._open = False

    async def usable(self) -> bool:
        if not self._open:
            self._open = await passed(self._created)
        return self._open

    async def _writable(self) -> None:
        if not await self.usable():
            raise StartAbandoned()

    async def create(
        self, task_id: str, *, meta: dict[str, str] | None = None, written_here: bool = True
    ) -> None:
        await self._log.create(task_id, meta=meta, written_here=written_here)

    def append(
        self, task_id: str, event: str, payload: dict[str, Any] | bytes
    ) -> Coroutine[Any, Any, RunEvent]:
        if self._open:  # once open, a write is the log's own (no extra coroutine per write)
            return self._log.append(task_id, event, payload)
        return self._append_once_open(task_id, event, payload)

    def extend(
        self, task_id: str, event: str, payloads: Sequence[dict[str, Any] | bytes]
    ) -> Coroutine[Any, Any, list[RunEvent]]:
        if self._open:
            return self._log.extend(task_id, event, payloads)
        return self._extend_once_open(task_id, event, payloads)

    async def _append_once_open(
        self, task_id: str, event: str, payload: dict[str, Any] | bytes
    ) -> RunEvent:
        await self._writable()
        return await self._log.append(task_id, event, payload)

    async def _extend_once_open(
        self, task_id: str, event: str, payloads: Sequence[dict[str, Any] | bytes]
    ) -> list[RunEvent]:
        await self._writable()
        return await self._log.extend(task_id, event, payloads)

    async def take_over(
        self, task_id: str, events: Sequence[tuple[str, dict[str, Any] | bytes]]
    ) -> list[RunEvent]:
        await self._writable()
        return await self._log.take_over(task_id, events)

    async def close(self, task_id: str) -> None:
        if await self.usable():
            await self._log.close(task_id)

    async def release(self, task_id: str) -> None:
        if await self.usable():
            await self._log.release(task_id)

    async def meta(self, task_id: str) -> dict[str, str] | None:
        return await self._log.meta(task_id)

    async def read(self, task_id: str, *, after: int, wait: float) -> list[RunEvent] | None:
        return await self._log.read(task_id, after=after, wait=wait)

    async def read_frames(self, task_id: str, *, after: int, wait: float) -> Frames | None:
        return await self._log.read_frames(task_id, after=after, wait=wait)

    def follow(self, task_id: str, *, after: int = 0) -> AsyncIterator[RunEvent]:
        return self._log.follow(task_id, after=after)

    async def aclose(self) -> None:
        """The log belongs to the process, not to this run: nothing to release."""


class GatedStore:
    """The run's store, written only once the run's rows exist (`committed`)."""

    def __init__(self, store: RunStore, committed: asyncio.Future[bool]) -> None:
        self._store = store
        self._committed = committed

    async def finish(self, result: Any) -> dict[str, Any]:
        if not await passed(self._committed):
            return {}  # its start never committed: there is nothing to store it on
        return await self._store.finish(result)

    async def renew_many(self, runs: Sequence[tuple[RunSpec, Any | None]]) -> set[str]:
        if self.committed():
            return await self._store.renew_many(runs)
        return set()  # its rows are not there yet: nothing to renew

    def committed(self) -> bool:
        """Whether the run's rows exist (its lease can be written)."""
        gate = self._committed
        return gate.done() and not gate.cancelled() and gate.result()

    async def claim(self, spec: RunSpec, lease_seconds: float) -> bool:
        return await self._store.claim(spec, lease_seconds)
