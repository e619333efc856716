"""The SQL of async runs' tasks (`async_tasks`): written with the run's rows, claimed with the
run, ended with it (the run's own finish, its takeover, a restart's ending of leftover runs).
Core statements, like the rest of the run SQL (`store.py`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, insert, select, update
from sqlalchemy.orm import Session

from conduit.core.runs.spec import RunSpec
from conduit.db.models import AsyncTask, WorkflowRun, utcnow

_TASKS = cast(Table, AsyncTask.__table__)
_RUNS = cast(Table, WorkflowRun.__table__)
PENDING, RUNNING = "pending", "running"
UNFINISHED = (PENDING, RUNNING)


def write_task(
    session: Session,
    spec: RunSpec,
    *,
    end_user_id: str,
    record_id: str,
    callback_url: str | None,
    created_at: datetime,
) -> None:
    """The async run's task, `pending` until a worker claims its run (in the start's
    transaction: no read, so it goes out with the commit)."""
    session.connection().execute(
        insert(_TASKS).values(
            id=spec.task_id,
            app_id=spec.app_id,
            end_user_id=end_user_id,
            kind=spec.kind,
            record_id=record_id,
            status=PENDING,
            callback_url=callback_url,
            created_at=created_at,
        )
    )


def start_task(connection: Connection, task_id: str) -> None:
    """A worker claimed the task's run: it is `running` from now."""
    connection.execute(
        update(_TASKS)
        .where(_TASKS.c.id == task_id, _TASKS.c.status == PENDING)
        .values(status=RUNNING, started_at=utcnow())
    )


def end_task(
    connection: Connection,
    task_id: str,
    status: str,
    *,
    error_code: str | None = None,
    error_message: str | None = None,
) -> Row[Any] | None:
    """The task's run ended with `status`: the task as ended (what its callback tells), or
    None when it has no task (not an async run) or its task had ended already (nothing to
    tell its callback twice)."""
    return connection.execute(
        update(_TASKS)
        .where(_TASKS.c.id == task_id, _TASKS.c.status.in_(UNFINISHED))
        .values(
            status=status,
            error_code=error_code,
            error_message=error_message,
            finished_at=utcnow(),
        )
        .returning(*_TASKS.c)
    ).first()


def unfinished_task_ids(connection: Connection) -> list[str]:
    """The tasks not yet ended (a restart ends their runs), but those of workflow runs that
    wait on a human-input form (they live in the database only, and go on when answered) or
    were resumed and not yet claimed (their execution is an outbox row the restart hands out
    again)."""
    paused = (
        select(_RUNS.c.id)
        .where(
            _RUNS.c.id == _TASKS.c.record_id,
            (_RUNS.c.status == "paused")
            | (
                (_RUNS.c.status == "running")
                & _RUNS.c.renewed_at.is_(None)
                & _RUNS.c.resumed_at.is_not(None)
            ),
        )
        .exists()
        .correlate(_TASKS)
    )
    rows = connection.scalars(select(_TASKS.c.id).where(_TASKS.c.status.in_(UNFINISHED), ~paused))
    return [str(task_id) for task_id in rows]


def workflow_task_id(connection: Connection, run_id: str) -> str | None:
    """The async task of a workflow run, if it was started async (its id is the run's first
    execution's task id: a resumed run runs under others)."""
    found = connection.scalars(
        select(_TASKS.c.id).where(_TASKS.c.record_id == run_id, _TASKS.c.kind == "workflow")
    ).first()
    return str(found) if found is not None else None
