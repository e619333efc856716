"""The logs' retention (`CONDUIT_RUNS_LOG_RETENTION_DAYS`): workflow runs that finished before
its horizon go with their node executions, oldest first, a batch per transaction; a running
run, a recent one and every other table stay. 0 (the default) keeps every run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import func, select

from conduit.db.models import Message, WorkflowNodeExecution, WorkflowRun, utcnow
from conduit.infra.db import Database
from conduit.infra.settings import Settings
from conduit.services.runs.workflow_store import logs_horizon, purge_finished_workflow_runs
from tests.support import add_chat_app


def add_run(db: Database, app_id: str, *, ended_days_ago: float | None, nodes: int = 3) -> str:
    """A workflow run created a day before its end (`None`: still running, created ten days
    ago), with its nodes."""
    ended = utcnow() - timedelta(days=9 if ended_days_ago is None else ended_days_ago)
    with db.transaction() as session:
        run = WorkflowRun(
            tenant_id="t", app_id=app_id, workflow_id="w", type="workflow", version="1",
            status="running" if ended_days_ago is None else "succeeded",
            created_at=ended - timedelta(days=1),
            finished_at=None if ended_days_ago is None else ended,
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
        assert purge_finished_workflow_runs(session, finished_before=horizon, batch=2) == 2
    assert left() == ({old[2], running, recent}, 9)  # the two oldest first
    with db.transaction() as session:
        assert purge_finished_workflow_runs(session, finished_before=horizon, batch=2) == 1
    with db.transaction() as session:
        assert purge_finished_workflow_runs(session, finished_before=horizon, batch=2) == 0
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
