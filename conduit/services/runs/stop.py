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
from conduit.db.models import App, EndUser, Message
from conduit.errors import NotFound
from conduit.infra.db import Database
from conduit.services.end_users import ANONYMOUS, SERVICE_API
from conduit.services.runs.context import Runs

# A cursor beyond any run's last event: a read from it only says whether the log exists.
_PAST_ANY_EVENT = 2**62


async def stop_run(
    runs: Runs, *, app: App, user: str, task_id: str, user_type: str = SERVICE_API
) -> bool:
    """Ask the run to stop; only its owner (`user`, an end user of `user_type`) can. False
    (and no effect) otherwise."""
    end_user_id = await asyncio.to_thread(end_user_id_of, runs.db, app.id, user, user_type)
    if end_user_id is None:
        return False
    meta = await runs.backends.eventlog.meta(task_id)
    if meta is None or meta.get("app_id") != app.id:
        return False
    return await runs.backends.stops.request_stop(task_id, f"end-user-{end_user_id}")


def end_user_id_of(db: Database, app_id: str, user: str, user_type: str) -> str | None:
    with db.sessions() as session:
        found = session.scalars(
            select(EndUser.id).where(
                EndUser.app_id == app_id, EndUser.type == user_type, EndUser.session_id == user
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


async def resumable_run_events(
    runs: Runs, *, app: App, user: str, task_id: str, user_type: str = SERVICE_API
) -> RunEvents:
    """The events of a run `user` of `app` owns (404 otherwise: another user's run does not
    exist for them). The log's meta says whose run it is; when the log has none (Redis
    restarted without it, while the run's writer kept its events and wrote them again), the
    database does."""
    log = runs.backends.eventlog
    meta = await log.meta(task_id)
    if meta is None:
        if not await asyncio.to_thread(_owns_run, runs.db, app.id, user, user_type, task_id):
            raise NotFound("The run is unknown or its events have expired.")
        # Its events, if any are left (RunNotFound, a 404, when the log expired or was lost).
        await log.read_frames(task_id, after=_PAST_ANY_EVENT, wait=0)
    elif (
        meta.get("app_id") != app.id
        or meta.get("user") != user
        or meta.get("user_type", SERVICE_API) != user_type
    ):
        raise NotFound("The run is unknown or its events have expired.")
    return RunEvents(log, task_id)


def _owns_run(db: Database, app_id: str, user: str, user_type: str, task_id: str) -> bool:
    """Whether the run's message is `user`'s (an end user of `user_type`), of `app_id`."""
    with db.sessions() as session:
        found = session.scalars(
            select(Message.id)
            .join(EndUser, EndUser.id == Message.end_user_id)
            .where(
                Message.task_id == task_id,
                Message.app_id == app_id,
                EndUser.app_id == app_id,
                EndUser.type == user_type,
                EndUser.session_id == (user or ANONYMOUS),
            )
        ).first()
        return found is not None
