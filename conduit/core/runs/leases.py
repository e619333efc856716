"""The leases of the runs an event loop executes, renewed together.

A live run keeps its lease by writing to its record (ADR 0008): the lease, and its answer so
far when it grew (a checkpoint). One write per run per second would cost a thread hop and a
statement each — at a hundred streams, a hundred of both per second, on the path every stream
shares. `LeaseKeeper` makes it one per tick per store instead: each event loop that executes
runs has one ticker, which every `checkpoint_every` seconds gathers the runs that are due
(grown since their last write, at least half a tick old, or not written for `lease_renewal`)
and hands them to their store's `renew_many` in one call. A run its store says no longer runs
(taken over elsewhere) has its `Lease.lost` resolved; the lifecycle waits on it beside the
run's work. A tick that fails is not a run's failure: the next tick tries again, and a lease
outlasts several of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from conduit.core.runs.kinds import Execution, RunStore
from conduit.core.runs.spec import RunSpec

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Lease:
    """A run held by its loop's ticker. `ready`: whether its record exists to be written (an
    early start's rows may not have committed yet; None: it does); `on_renewed`: called after
    each write (e.g. to renew its concurrency slot with it); `lost`: resolved when its store
    says it no longer runs."""

    spec: RunSpec
    store: RunStore
    execution: Execution
    ready: Callable[[], bool] | None
    on_renewed: Callable[[], Awaitable[None]] | None
    written_at: float
    lost: asyncio.Future[None] = field(repr=False)


class LeaseKeeper:
    """Renews the leases of the runs of every event loop it is used on (one ticker per loop:
    an embedded server's worker threads each run their own)."""

    def __init__(self) -> None:
        self._tickers: WeakKeyDictionary[asyncio.AbstractEventLoop, _Ticker] = WeakKeyDictionary()

    @contextlib.contextmanager
    def holding(
        self,
        spec: RunSpec,
        store: RunStore,
        execution: Execution,
        *,
        every: float,
        renew_after: float,
        ready: Callable[[], bool] | None = None,
        on_renewed: Callable[[], Awaitable[None]] | None = None,
    ) -> Iterator[Lease]:
        """Keep the run's lease while the block runs. Its record was written as it started
        (its insert or its claim), so its first write is due half a tick from now at the
        earliest."""
        loop = asyncio.get_running_loop()
        ticker = self._tickers.get(loop)
        if ticker is None:
            ticker = self._tickers[loop] = _Ticker(every=every, renew_after=renew_after)
        lease = Lease(
            spec=spec,
            store=store,
            execution=execution,
            ready=ready,
            on_renewed=on_renewed,
            written_at=loop.time(),
            lost=loop.create_future(),
        )
        ticker.add(lease)
        try:
            yield lease
        finally:
            ticker.discard(lease)


class _Ticker:
    """One loop's held runs and the task that renews them (it ends when none is held)."""

    def __init__(self, *, every: float, renew_after: float) -> None:
        self._every = every
        self._renew_after = renew_after
        self._held: dict[str, Lease] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, lease: Lease) -> None:
        self._held[lease.spec.task_id] = lease
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._tick_while_held(), name="run-leases"
            )

    def discard(self, lease: Lease) -> None:
        if self._held.get(lease.spec.task_id) is lease:
            del self._held[lease.spec.task_id]

    async def _tick_while_held(self) -> None:
        while self._held:
            await asyncio.sleep(self._every)
            try:
                await self._renew_due()
            except Exception:
                logger.warning("renewing run leases failed; the next tick retries", exc_info=True)

    async def _renew_due(self) -> None:
        now = asyncio.get_running_loop().time()
        due: dict[RunStore, list[tuple[Lease, Any | None]]] = {}
        for lease in list(self._held.values()):
            age = now - lease.written_at
            if age < self._every / 2 or lease.lost.done():
                continue
            if lease.ready is not None and not lease.ready():
                continue
            checkpoint = lease.execution.checkpoint()
            if checkpoint is None and age < self._renew_after:
                continue
            due.setdefault(lease.store, []).append((lease, checkpoint))
        await asyncio.gather(*(_renew(store, batch, now) for store, batch in due.items()))


async def _renew(store: RunStore, batch: list[tuple[Lease, Any | None]], now: float) -> None:
    try:
        gone = await store.renew_many([(lease.spec, checkpoint) for lease, checkpoint in batch])
    except Exception:
        # Not the runs' failure: the next tick renews them (a lease outlasts several ticks).
        logger.warning("renewing %d run lease(s) failed", len(batch), exc_info=True)
        return
    renewed: list[Lease] = []
    for lease, _ in batch:
        if lease.spec.task_id in gone:
            if not lease.lost.done():
                lease.lost.set_result(None)
        else:
            lease.written_at = now
            renewed.append(lease)
    await asyncio.gather(*(_after_renewal(lease) for lease in renewed if lease.on_renewed))


async def _after_renewal(lease: Lease) -> None:
    assert lease.on_renewed is not None
    try:
        await lease.on_renewed()
    except Exception:
        logger.warning("run %s: after its lease renewal", lease.spec.task_id, exc_info=True)
