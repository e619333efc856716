"""Taking over runs whose executor is gone, so that no run stays `running` and none is lost.

A live run renews its lease (its message's `renewed_at`) every `CONDUIT_RUNS_LEASE_SECONDS / 4`
at the latest, and stores its answer so far with it about every second while it streams (the
checkpoint, `core/runs/lifecycle.py`); it is cut by its own lifecycle at
`CONDUIT_RUNS_MAX_SECONDS`. So a run whose lease lapsed, or that was never renewed long after
the longest a run may take (queued, and its queue lost it), has no executor left.

Taking one over (`take_over_dead_runs`, every `CONDUIT_RUNS_TAKEOVER_INTERVAL` in every
distributed server, and by beat as a backstop) ends it the way its own lifecycle would have,
in the same order (docs/decisions/0008-taking-over-dead-runs.md):

1. its answer is what its event log holds (what any follower has seen or will see), or the
   last checkpoint when the log is gone;
2. it is stored: `failed` with `run_interrupted`, by one guarded UPDATE that loses to a renewal
   made meanwhile (the executor lives after all) and to another taker;
3. only the winner appends the `error` event to the log and closes it, gives the run's
   concurrency slot back and forgets its stop registration.

So what a follower assembles from the log equals the stored answer, and the model is never
called twice for one run: the run is not run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from conduit.core.apps.agent import Thought
from conduit.core.apps.chat import error_payload, message_envelope
from conduit.core.runs.backends import RunBackends
from conduit.core.runs.eventlog.base import EventLog
from conduit.core.runs.status import RunStatus
from conduit.db.models import utcnow
from conduit.errors import RunInterrupted
from conduit.infra.db import Database
from conduit.infra.settings import Settings
from conduit.services.runs.start import app_slot_key
from conduit.services.runs.store import (
    INTERRUPTED,
    LapsedRun,
    end_lapsed_run,
    end_runs,
    lapsed_runs,
)
from conduit.services.runs.tasks import end_run_task
from conduit.services.runs.workflow_store import (
    end_interrupted_workflow_runs,
    take_over_dead_workflow_runs,
)

logger = logging.getLogger(__name__)


def end_interrupted_runs(session: Session) -> int:
    """End every `running` run as failed, its last checkpoint kept: for a process that is the
    only one running them, at its start (the embedded mode, whose logs died with it)."""
    return end_runs(session) + end_interrupted_workflow_runs(session)


async def take_over_dead_runs(db: Database, backends: RunBackends, settings: Settings) -> int:
    """Take over the runs whose executor is gone (see the module's docstring); never a live
    one. Returns how many were taken over."""
    now = utcnow()
    lapsed = await asyncio.to_thread(
        _lapsed,
        db,
        now - timedelta(seconds=settings.runs.lease_seconds),
        now - timedelta(seconds=settings.runs.max_seconds + 60),
        now - timedelta(seconds=settings.runs.async_max_seconds + 60),
    )
    taken = 0
    for run in lapsed:
        if await _take_over(db, backends, run):
            taken += 1
    if taken:
        logger.warning("took over %d run(s) whose executor is gone", taken)
    return taken + await take_over_dead_workflow_runs(db, backends, settings)


def _lapsed(
    db: Database,
    lease_lapsed_before: datetime,
    never_renewed_before: datetime,
    async_never_renewed_before: datetime,
) -> list[LapsedRun]:
    with db.statements() as connection:
        return lapsed_runs(
            connection,
            lease_lapsed_before=lease_lapsed_before,
            never_renewed_before=never_renewed_before,
            async_never_renewed_before=async_never_renewed_before,
        )


def _end(db: Database, run: LapsedRun, answer: str, thoughts: list[dict[str, Any]] | None) -> bool:
    """End the run and, if it is an async run's, its task (one transaction)."""
    with db.transaction() as session:
        if not end_lapsed_run(session.connection(), run, answer, thoughts):
            return False
        if run.task_id is not None:
            end_run_task(
                session,
                run.task_id,
                RunStatus.FAILED.value,
                error_code=RunInterrupted.code,
                error_message=INTERRUPTED,
            )
        return True


async def _take_over(db: Database, backends: RunBackends, run: LapsedRun) -> bool:
    log = backends.eventlog
    logged, ended, thoughts = (
        await _logged_answer(log, run.task_id) if run.task_id else (None, False, None)
    )
    answer = run.answer if logged is None else logged
    if not await asyncio.to_thread(_end, db, run, answer, thoughts):
        return False
    if run.task_id is None:
        return True
    created = int(run.created_at.timestamp())
    fields = (run.mode, run.conversation_id, run.message_id, created)
    # The stored answer first: a follower of the dead executor may have been shown a few
    # events its log never got (the inline executor writes behind its local readers), and
    # `message_replace` makes what every follower assembles the stored answer again.
    replace = message_envelope(
        *fields, "message_replace", task_id=run.task_id, id=run.message_id, answer=answer
    )
    error = message_envelope(*fields, "error", **error_payload(RunInterrupted()))
    try:
        if logged is not None and not ended:  # a log gone or ended takes nothing more
            await log.take_over(run.task_id, [("message_replace", replace), ("error", error)])
            await log.close(run.task_id)
    except Exception:
        logger.warning("run %s: ending its log failed", run.task_id, exc_info=True)
    with contextlib.suppress(Exception):
        await backends.limiter.release(app_slot_key(run.app_id), run.task_id)
    with contextlib.suppress(Exception):
        await backends.stops.forget(run.task_id)
    logger.warning("run %s taken over: its executor is gone", run.task_id)
    return True


async def _logged_answer(
    log: EventLog, task_id: str
) -> tuple[str | None, bool, list[dict[str, Any]] | None]:
    """The answer the run's log holds (its `message` or an agent's `agent_message` events;
    None when the log is gone), whether the log has ended already (its executor died between
    storing and ending it, or storing failed) and an agent's rounds as the log last reported
    each (None: not an agent's run, or its log is gone)."""
    pieces: list[str] = []
    thoughts: dict[str, dict[str, Any]] = {}
    after = 0
    try:
        while True:
            batch = await log.read(task_id, after=after, wait=0.001)
            if batch is None or not batch:
                return "".join(pieces), batch is None, _stored_thoughts(thoughts)
            for event in batch:
                after = event.seq
                if event.event in ("message", "agent_message"):
                    pieces.append(str(event.payload.get("answer", "")))
                elif event.event == "agent_thought":
                    thoughts[str(event.payload.get("id"))] = event.payload
    except Exception:
        logger.info("run %s: its log is gone; its checkpoint is kept", task_id)
        return None, False, None


def _stored_thoughts(logged: dict[str, dict[str, Any]]) -> list[dict[str, Any]] | None:
    """An agent's rounds from their last `agent_thought` events, as its message keeps them."""
    return [
        Thought.of(payload).stored(str(payload.get("message_id"))) for payload in logged.values()
    ] or None
