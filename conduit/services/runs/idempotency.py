"""`Idempotency-Key` on run-creating requests: a repeat attaches to the run the first request
started instead of starting another (ADR 0010).

Scope: (app, end user, key). The run's record keeps the key and the SHA-256 of the canonical
JSON of the fields that define the run (the planner's `fingerprint`, after validation); a
unique index over the scope lets exactly one start commit per key.

- A request whose key names no run starts one with the key (`start_run(key=...)`). Should
  another request with the same key commit first, this start rolls back (its slot given back)
  and attaches to that run: two simultaneous requests make exactly one run.
- A repeat (same scope, same hash) attaches: the run's events from the start, live until its
  end; once its log has expired, its events rebuilt from its stored result. It takes no slot
  and no rate, calls no model and writes nothing.
- The same key with another request body is `409 idempotency_key_reused`; a run still going
  whose log is gone (its Redis lost it) is `409 idempotency_key_in_progress`.
- A first request refused (4xx) stored nothing: its key names no run, and a repeat starts one.

Keys live as long as their run's record. The async runs (issue 21) reuse this verb: a repeat
returns the same task.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import orjson

from conduit.core.runs.eventlog.memory import MemoryEventLog
from conduit.core.runs.kinds import Event
from conduit.db.models import App
from conduit.errors import IdempotencyKeyInProgress, IdempotencyKeyReused
from conduit.services.end_users import SERVICE_API
from conduit.services.runs.context import Runs
from conduit.services.runs.start import KeyedRun, KeyTaken, Planner, RunKey, start_run
from conduit.services.runs.stop import RunEvents, run_events

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartedRun:
    """What a run-starting request answers from: the run's events (from the start) and its
    names (task id, and the kind's ids)."""

    task_id: str
    names: dict[str, str]
    events: RunEvents
    attached: bool  # started by an earlier request with the same key
    async_task_id: str | None = None  # its async task, when not `task_id` (`KeyedRun`)


def request_hash(fields: dict[str, Any]) -> str:
    """SHA-256 of the fields' canonical JSON (keys sorted at every level)."""
    return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def start_or_attach(
    runs: Runs,
    planner: Planner,
    *,
    app: App,
    key_id: str | None,
    user: str,
    request: Any,
    key: str,
    user_type: str = SERVICE_API,
) -> StartedRun:
    """Start the run of `request` under Idempotency-Key `key`, or attach to the run an earlier
    request of `user` of `app` started under it (409 when that request was another)."""
    run_key = RunKey(key, request_hash(planner.fingerprint(request)))
    found = await asyncio.to_thread(_keyed_run, runs, planner, app, user, user_type, key)
    if found is None:
        try:
            spec = await start_run(
                runs,
                planner,
                app=app,
                key_id=key_id,
                user=user,
                request=request,
                key=run_key,
                user_type=user_type,
            )
        except KeyTaken as taken:
            logger.info(
                "run %s: a simultaneous request under its Idempotency-Key attaches to it",
                taken.run.task_id,
            )
            found = taken.run
        else:
            return StartedRun(
                spec.task_id, planner.names(spec), run_events(runs, spec.task_id), attached=False
            )
    planner.check(app, request)
    if found.request_hash != run_key.request_hash:
        raise IdempotencyKeyReused()
    return StartedRun(
        found.task_id,
        found.names,
        await _events_of(runs, planner, app, found),
        attached=True,
        async_task_id=found.async_task_id,
    )


def _keyed_run(
    runs: Runs, planner: Planner, app: App, user: str, user_type: str, key: str
) -> KeyedRun | None:
    with runs.db.sessions() as session:
        return planner.keyed_run(session, app=app, user=user, user_type=user_type, key=key)


async def _events_of(runs: Runs, planner: Planner, app: App, run: KeyedRun) -> RunEvents:
    """The run's events: its log while it is kept, else (expired) its stored result's."""
    log = runs.backends.eventlog
    if await log.meta(run.task_id) is not None:
        return RunEvents(log, run.task_id)
    stored = await asyncio.to_thread(_stored_events, runs, planner, app, run)
    if stored is None:
        raise IdempotencyKeyInProgress()
    return RunEvents(await replay_log(run.task_id, stored), run.task_id)


def _stored_events(runs: Runs, planner: Planner, app: App, run: KeyedRun) -> list[Event] | None:
    with runs.db.sessions() as session:
        return planner.stored_events(session, app=app, run=run)


async def replay_log(task_id: str, events: list[Event]) -> MemoryEventLog:
    """A closed log of this request's own holding `events`: every consumer (stream, blocking
    reply) reads it as it reads a run's."""
    log = MemoryEventLog(max_runs=1)
    await log.create(task_id)
    for name, payload in events:
        await log.append(task_id, name, payload)
    await log.close(task_id)
    return log
