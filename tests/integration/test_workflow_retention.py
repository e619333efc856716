"""The logs' retention (`CONDUIT_RUNS_LOG_RETENTION_DAYS`): workflow runs that finished before
its horizon go with their node executions, oldest first, a batch per transaction (of runs and
of node executions); a running run, a recent one, one whose async task is still kept and every
other table stay. 0 (the default) keeps every run. And the async tasks' retention forgets a
workflow run's Idempotency-Key with its task."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import delete, func, select, update

from conduit.db.models import (
    App,
    AsyncTask,
    EndUser,
    Message,
    WorkflowNodeExecution,
    WorkflowRun,
    utcnow,
)
from conduit.infra.db import Database
from conduit.infra.settings import Settings
from conduit.services.runs.tasks import purge_expired_tasks
from conduit.services.runs.workflow_store import logs_horizon, purge_finished_workflow_runs
from tests.support import add_chat_app


def add_run(
    db: Database,
    app_id: str,
    *,
    ended_days_ago: float | None,
    nodes: int = 3,
    task_id: str | None = None,
    key: str | None = None,
) -> str:
    """A workflow run created a day before its end (`None`: still running, created ten days
    ago), with its nodes (and its task id and Idempotency-Key)."""
    ended = utcnow() - timedelta(days=9 if ended_days_ago is None else ended_days_ago)
    with db.transaction() as session:
        run = WorkflowRun(
            tenant_id="t", app_id=app_id, workflow_id="w", type="workflow", version="1",
            status="running" if ended_days_ago is None else "succeeded",
            created_at=ended - timedelta(days=1),
            finished_at=None if ended_days_ago is None else ended,
            task_id=task_id, idempotency_key=key, request_hash="h" if key else None,
        )  # fmt: skip
        session.add(run)
        session.flush()
        for index in range(nodes):
            session.add(
                WorkflowNodeExecution(
                    tenant_id="t",
                    app_id=app_id,
                    workflow_id="w",
                    workflow_run_id=run.id,
                    index=index,
                    node_id=f"n{index}",
                    node_type="code",
                    title="Code",
                    status="succeeded",
                    created_at=ended,
                )
            )
        return run.id


def test_runs_past_the_horizon_go_with_their_nodes_a_batch_at_a_time(db: Database) -> None:
    with db.transaction() as session:
        app_id = add_chat_app(session, "Flows").id
    old = [add_run(db, app_id, ended_days_ago=days) for days in (9, 8, 7)]
    running = add_run(db, app_id, ended_days_ago=None)  # created long ago, never ended
    recent = add_run(db, app_id, ended_days_ago=1)
    horizon = utcnow() - timedelta(days=5)

    def left() -> tuple[set[str], int]:
        with db.reads() as session:
            runs = set(session.scalars(select(WorkflowRun.id)))
            nodes = session.scalar(select(func.count()).select_from(WorkflowNodeExecution))
            return runs, int(nodes or 0)

    with db.transaction() as session:
        assert purge_finished_workflow_runs(session, finished_before=horizon, batch=2) == (2, True)
    assert left() == ({old[2], running, recent}, 9)  # the two oldest first
    with db.transaction() as session:
        assert purge_finished_workflow_runs(session, finished_before=horizon, batch=2) == (1, False)
    with db.transaction() as session:
        assert purge_finished_workflow_runs(session, finished_before=horizon, batch=2) == (0, False)
    assert left() == ({running, recent}, 6)
    with db.reads() as session:  # nothing else touched
        assert session.scalar(select(func.count()).select_from(Message)) == 0


def test_the_horizon_follows_the_setting_and_never_precedes_an_async_tasks(
    make_settings: Callable[..., Settings],
) -> None:
    assert logs_horizon(make_settings()) is None  # the default keeps every run
    week = logs_horizon(make_settings(CONDUIT_RUNS_LOG_RETENTION_DAYS="7"))
    assert week is not None
    assert abs((utcnow() - week) - timedelta(days=7)) < timedelta(minutes=1)
    # An async run's task (its result read from its run) outlives a shorter log retention.
    short = logs_horizon(
        make_settings(
            CONDUIT_RUNS_LOG_RETENTION_DAYS="0.5", CONDUIT_RUNS_ASYNC_RETENTION_HOURS="48"
        )
    )
    assert short is not None
    assert abs((utcnow() - short) - timedelta(hours=48)) < timedelta(minutes=1)


def nodes_of(db: Database, run_id: str) -> int:
    with db.reads() as session:
        query = select(func.count()).where(WorkflowNodeExecution.workflow_run_id == run_id)
        return int(session.scalar(query) or 0)


def test_a_runs_many_nodes_go_over_several_transactions(db: Database) -> None:
    """An iteration's run may have thousands of node executions: no transaction removes more
    than `node_batch` of them, and the run goes with its last."""
    with db.transaction() as session:
        app_id = add_chat_app(session, "Loops").id
    run = add_run(db, app_id, ended_days_ago=9, nodes=7)
    horizon = utcnow() - timedelta(days=5)
    for expected, nodes_left in (((0, True), 4), ((0, True), 1), ((1, False), 0)):
        with db.transaction() as session:
            found = purge_finished_workflow_runs(session, finished_before=horizon, node_batch=3)
        assert (found, nodes_of(db, run)) == (expected, nodes_left)
    with db.reads() as session:
        assert session.get(WorkflowRun, run) is None


def add_task(db: Database, app_id: str, run_id: str, *, ended_days_ago: float) -> str:
    """An async workflow run's task for `run_id` (its record), ended days ago."""
    ended = utcnow() - timedelta(days=ended_days_ago)
    with db.transaction() as session:
        app = session.get_one(App, app_id)
        user = EndUser(tenant_id=app.tenant_id, app_id=app_id, session_id=f"poller-{run_id}")
        session.add(user)
        session.flush()
        task = AsyncTask(
            id=str(uuid.uuid4()), app_id=app_id, end_user_id=user.id, kind="workflow",
            record_id=run_id, status="succeeded", created_at=ended, finished_at=ended,
        )  # fmt: skip
        session.add(task)
        session.flush()
        session.execute(update(WorkflowRun).where(WorkflowRun.id == run_id).values(task_id=task.id))
        return task.id


def test_a_run_whose_async_task_is_kept_stays(db: Database) -> None:
    """Its task's result is read from the run: the run goes only once the task has, whatever
    the two retentions say."""
    with db.transaction() as session:
        app_id = add_chat_app(session, "Async flows").id
    run = add_run(db, app_id, ended_days_ago=9)
    task = add_task(db, app_id, run, ended_days_ago=9)
    horizon = utcnow() - timedelta(days=5)
    with db.transaction() as session:
        assert purge_finished_workflow_runs(session, finished_before=horizon) == (0, False)
    with db.transaction() as session:
        session.execute(delete(AsyncTask).where(AsyncTask.id == task))
    with db.transaction() as session:
        assert purge_finished_workflow_runs(session, finished_before=horizon) == (1, False)


def test_an_expired_workflow_tasks_key_is_forgotten_with_it(
    db: Database, make_settings: Callable[..., Settings]
) -> None:
    with db.transaction() as session:
        app_id = add_chat_app(session, "Keys").id
    expired = add_run(db, app_id, ended_days_ago=3, key="k-old")
    kept = add_run(db, app_id, ended_days_ago=0.1, key="k-new")
    add_task(db, app_id, expired, ended_days_ago=3)
    add_task(db, app_id, kept, ended_days_ago=0.1)
    with db.transaction() as session:  # the default retention: 24 hours
        assert purge_expired_tasks(session, make_settings()) == 1
    with db.reads() as session:
        keys = {
            row.id: (row.idempotency_key, row.request_hash)
            for row in session.scalars(select(WorkflowRun))
        }
    assert keys == {expired: (None, None), kept: ("k-new", "h")}
