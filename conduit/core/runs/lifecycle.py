"""The lifecycle of every run, whatever its kind: running → succeeded | failed | stopped.

`execute_run` runs the app runner's execution against the run's event log, racing it with
the run's stop request, its time limit and the process's shutdown; renews the run's lease
while it lives, storing what it produced so far with it (a checkpoint about every
`checkpoint_every` seconds, only when it grew; the runs of one event loop together:
`core/runs/leases.py`), so that a run whose executor dies is taken over within seconds with its
partial answer (`services/runs/reaper.py`); and ends it in one order: the result is stored
(`RunStore.finish`) *before* the terminal events are appended and the log is closed, so
whoever sees the end of a run can read its stored result. It never raises for the run's own
failures: they end up in the result and the log. The HTTP consumer never writes; a client
that goes away loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from conduit.core.runs.backends import RunBackends
from conduit.core.runs.early import GatedLog, GatedStore, StartGates
from conduit.core.runs.eventlog.base import EventLog
from conduit.core.runs.kinds import AppRunner, AppRunners, Execution, RunStore
from conduit.core.runs.leases import LeaseKeeper
from conduit.core.runs.spec import RunSpec
from conduit.core.runs.status import RunStatus, transition
from conduit.core.runs.stop import StopRegistry
from conduit.errors import ConduitError, RunTakenOver, RunTimeLimitExceeded

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunLimits:
    """`max_seconds`: the longest a run may take (it is then ended, its partial result kept);
    `lease_seconds`: how long a run's lease lasts (a run whose lease lapsed is taken over);
    `lease_renewal`: how often a live run renews it at the latest; `checkpoint_every`: how
    often a run that produced something since stores it (renewing its lease with it);
    `async_max_seconds`: the longest an async run may take."""

    max_seconds: float = 600.0
    async_max_seconds: float = 3600.0
    lease_seconds: float = 6.0
    lease_renewal: float = 1.5
    checkpoint_every: float = 1.0


async def execute_run(
    spec: RunSpec,
    runner: AppRunner,
    *,
    log: EventLog,
    stops: StopRegistry,
    leases: LeaseKeeper,
    limits: RunLimits,
    gates: StartGates | None = None,
    on_stored: Callable[[], Awaitable[None]] | None = None,
    on_renewed: Callable[[], Awaitable[None]] | None = None,
) -> Any:
    """Run `spec` to its end with `runner`; returns the runner's result. `gates`: the run was
    started early (`core/runs/early.py`); `on_stored`: called once the result is stored,
    before the terminal events (e.g. to give the run's concurrency slot back); `on_renewed`:
    after each renewal of its lease (e.g. to renew its concurrency slot with it)."""
    store: RunStore = runner.store
    gated: GatedLog | None = None
    ready: Callable[[], bool] | None = None  # its record exists from the start
    if gates is not None:
        gated = GatedLog(log, gates.created)
        gated_store = GatedStore(store, gates.committed)
        log, store, ready = gated, gated_store, gated_store.committed
    status = transition(RunStatus.PENDING, RunStatus.RUNNING)
    execution = runner.start(spec)
    error: ConduitError | None = None
    work = asyncio.ensure_future(execution.run(log))
    stop_watch = asyncio.ensure_future(stops.wait_for_stop(spec.task_id))
    try:
        with leases.holding(
            spec,
            runner.store,
            execution,
            every=limits.checkpoint_every,
            renew_after=limits.lease_renewal,
            ready=ready,
            on_renewed=on_renewed,
        ) as lease:
            done, _ = await asyncio.wait(
                {work, stop_watch, lease.lost},
                timeout=limits.max_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        if work in done:
            work.result()  # raises the run's failure
            status = transition(status, RunStatus.SUCCEEDED)
        elif stop_watch in done:
            await _cancelled(work)  # closes the model stream / stops local generation
            status = transition(status, RunStatus.STOPPED)
        elif lease.lost in done:
            # Its row is no longer `running`: it was taken over (its lease lapsed, say under a
            # stalled database), its answer so far stored and its log ended by the taker.
            # Going on would stream an answer nobody stores.
            await _cancelled(work)
            logger.warning("run %s was taken over elsewhere; it stops here", spec.task_id)
            await log.release(spec.task_id)
            return execution.result(RunStatus.FAILED, RunTakenOver())
        else:
            await _cancelled(work)
            error = RunTimeLimitExceeded(
                f"The run reached its time limit of {limits.max_seconds:g} seconds and "
                "was ended; its partial answer is kept."
            )
            status = transition(status, RunStatus.FAILED)
    except ConduitError as failure:
        error = failure
        status = transition(status, RunStatus.FAILED)
    except asyncio.CancelledError:
        # The process is shutting down (drain timeout): end the run as stopped, keep its work.
        work.cancel()
        status = transition(status, RunStatus.STOPPED)
        await _finish(spec, runner, execution, log, gated, store, status, None, on_stored)
        raise
    except Exception as failure:
        logger.exception("run %s failed unexpectedly", spec.task_id)
        error = ConduitError("Internal Server Error, please contact support.")
        error.__cause__ = failure
        status = transition(status, RunStatus.FAILED)
    finally:
        stop_watch.cancel()
    return await _finish(spec, runner, execution, log, gated, store, status, error, on_stored)


async def _cancelled(work: asyncio.Future[None]) -> None:
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await work


async def _finish(
    spec: RunSpec,
    runner: AppRunner,
    execution: Execution,
    log: EventLog,
    gated: GatedLog | None,
    store: RunStore,
    status: RunStatus,
    error: ConduitError | None,
    on_stored: Callable[[], Awaitable[None]] | None,
) -> Any:
    result = execution.result(status, error)
    stored: dict[str, Any] | None = {}
    cancelled: asyncio.CancelledError | None = None
    try:
        stored = await _stored(store, result, spec)
    except asyncio.CancelledError as cancel:
        # Cancelled while storing (the drain's deadline, an early start that failed): the
        # store's thread finishes on its own; the log is still ended below, then the cancel
        # goes on.
        cancelled = cancel
    if on_stored is not None:
        try:
            await on_stored()
        except Exception:
            logger.exception("run %s: giving its concurrency slot back failed", spec.task_id)
    try:
        if gated is not None and not await gated.usable():
            return result  # its log never came to exist: nothing to end there
        if stored is None:
            # Not stored: its row stays `running` and its log open; once its lease lapses the
            # run is taken over (stored with the log's answer, the log ended with an error),
            # so that no follower reads an end that the database does not hold. (Or it was
            # taken over already.) Either way the taker, maybe in another process, ends the log.
            await log.release(spec.task_id)
            return result
        try:
            for name, payload in runner.terminal_events(spec, result, stored):
                await log.append(spec.task_id, name, payload)
        finally:
            await log.close(spec.task_id)
    finally:
        if cancelled is not None:
            raise cancelled
    return result


# Waits between attempts to store a run's result (a database restarting takes seconds).
_STORE_RETRIES = (0.25, 0.5, 1.0, 2.0)


async def _stored(store: RunStore, result: Any, spec: RunSpec) -> dict[str, Any] | None:
    """Store the result, retrying what may pass on a later try; None when it could not be
    stored (the run is then left to the takeover)."""
    for delay in (*_STORE_RETRIES, None):
        try:
            return await store.finish(result)
        except ConduitError as refused:
            # The store refused the result (the run was taken over meanwhile, say): the taker
            # stored it and ends its log.
            logger.warning("run %s: its result was refused: %s", spec.task_id, refused.message)
            return None
        except Exception:
            if delay is None:
                logger.exception("run %s: storing the result failed", spec.task_id)
                return None
            logger.warning("run %s: storing the result failed; retrying", spec.task_id)
            await asyncio.sleep(delay)
    return None


async def run_to_end(
    backends: RunBackends,
    runners: AppRunners,
    limits: RunLimits,
    spec: RunSpec,
    *,
    slot_key: str | None,
    gates: StartGates | None = None,
) -> Any:
    """What every executor calls: execute the run with its kind's runner, and always give its
    concurrency slot (as soon as its result is stored) and its stop registration back."""
    held = [slot_key] if slot_key else []
    if spec.asynchronous:
        limits = dataclasses.replace(limits, max_seconds=limits.async_max_seconds)

    async def release() -> None:
        if held:
            await backends.limiter.release(held.pop(), spec.task_id)

    async def renew_slot() -> None:
        # The slot lives as long as the run's lease: a dead executor's slot frees with it.
        if held:
            await backends.limiter.renew(held[0], holder=spec.task_id, ttl=limits.lease_seconds)

    try:
        return await execute_run(
            spec,
            runners.get(spec.kind),  # a spec is built or decoded for a registered kind only
            log=backends.eventlog,
            stops=backends.stops,
            limits=limits,
            gates=gates,
            leases=backends.leases,
            on_stored=release,
            on_renewed=renew_slot,
        )
    finally:
        await release()
        await backends.stops.forget(spec.task_id)
