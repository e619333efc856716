"""Stopping a run, and reading its events (the verbs every tier's controller calls; no
controller reaches into the run backends)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from conduit.core.runs.eventlog.base import EventLog
from conduit.core.runs.events import Frames, RunEvent
from conduit.db.models import App, EndUser
from conduit.errors import NotFound
from conduit.infra.db import Database
from conduit.services.runs.context import Runs


async def stop_run(runs: Runs, *, app: App, user: str, task_id: str) -> bool:
    """Ask the run to stop; only its owner can. False (and no effect) otherwise."""
    end_user_id = await asyncio.to_thread(_end_user_id, runs.db, app.id, user)
    if end_user_id is None:
        return False
    meta = await runs.backends.eventlog.meta(task_id)
    if meta is None or meta.get("app_id") != app.id:
        return False
    return await runs.backends.stops.request_stop(task_id, f"end-user-{end_user_id}")


def _end_user_id(db: Database, app_id: str, user: str) -> str | None:
    with db.sessions() as session:
        found = session.scalars(
            select(EndUser.id).where(
                EndUser.app_id == app_id, EndUser.type == "service-api", EndUser.session_id == user
            )
        ).first()
        return str(found) if found else None


@dataclass(frozen=True)
class RunEvents:
    """One run's events as every consumer reads them: a stream (`read_frames`, in batches),
    a blocking reply (`follow`, to the end)."""

    log: EventLog
    task_id: str

    def follow(self, *, after: int = 0) -> AsyncIterator[RunEvent]:
        return self.log.follow(self.task_id, after=after)

    def read_frames(self, *, after: int, wait: float) -> Coroutine[Any, Any, Frames | None]:
        # The log's own coroutine: no extra one per read of every stream.
        return self.log.read_frames(self.task_id, after=after, wait=wait)


def run_events(runs: Runs, task_id: str) -> RunEvents:
    """The events of a run this request started."""
    return RunEvents(runs.backends.eventlog, task_id)


async def resumable_run_events(runs: Runs, *, app: App, user: str, task_id: str) -> RunEvents:
    """The events of a run `user` of `app` owns (404 otherwise: another user's run does not
    exist for them)."""
    meta = await runs.backends.eventlog.meta(task_id)
    if meta is None or meta.get("app_id") != app.id or meta.get("user") != user:
        raise NotFound("The run is unknown or its events have expired.")
    return RunEvents(runs.backends.eventlog, task_id)
