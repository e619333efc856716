"""Paused workflow runs in the database (SQLite, and PostgreSQL in the distributed mode): a run
resumed long after it started is not taken for dead while it waits for a worker; one whose
resumed execution did die is ended with its async task (found by its run: the task id is the
first execution's) and its forms closed; a restart of the embedded mode leaves the tasks of
paused runs alone; a resume carries the run's totals on."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from conduit.core.apps.workflow import WorkflowRunBody
from conduit.core.runs.backends import build_run_backends
from conduit.db.models import AsyncTask, EndUser, HumanInputForm, WorkflowRun, utcnow
from conduit.infra.db import Database
from conduit.infra.settings import Settings
from conduit.services import human_input
from conduit.services.runs import end_interrupted_runs
from conduit.services.runs.workflow_store import take_over_dead_workflow_runs
from tests.integration.test_reaper import settings
from tests.support import add_chat_app

__all__ = ["settings"]


def paused_run(db: Database, *, started_hours_ago: float, asynchronous: bool = True) -> str:
    """A workflow run paused on one form, started long ago, with its async task."""
    with db.transaction() as session:
        app = add_chat_app(session, "Approvals")
        user = EndUser(app_id=app.id, tenant_id=app.tenant_id, type="service-api", session_id="u")
        session.add(user)
        session.flush()
        created = utcnow() - timedelta(hours=started_hours_ago)
        first_task = str(uuid.uuid4())
        run_id = str(uuid.uuid4())
        body = WorkflowRunBody(
            workflow_run_id=run_id, workflow_id="w", graph={}, inputs={}, system={}
        )
        spec = {
            "task_id": first_task,
            "kind": "workflow",
            "app_id": app.id,
            "tenant_id": app.tenant_id,
            "owner": f"end-user-{user.id}",
            "created_at": int(created.timestamp()),
            "body": body.to_json(),
            "asynchronous": asynchronous,
        }
        session.add(
            WorkflowRun(
                id=run_id, tenant_id=app.tenant_id, app_id=app.id, workflow_id="w",
                type="workflow", version="1", task_id=first_task, status="paused",
                created_at=created, end_user_id=user.id, resume_spec=spec,
                total_tokens=42, exceptions_count=1, elapsed_time=2.5,
            )
        )  # fmt: skip
        session.flush()
        session.add(
            HumanInputForm(
                tenant_id=app.tenant_id, app_id=app.id, workflow_run_id=run_id,
                task_id=first_task, node_id="ask", node_title="Ask", token=uuid.uuid4().hex,
                status="waiting", definition={}, created_at=created,
                expiration_time=utcnow() + timedelta(days=1), pending_resume=False,
            )
        )  # fmt: skip
        if asynchronous:
            session.add(
                AsyncTask(
                    id=first_task, app_id=app.id, end_user_id=user.id, kind="workflow",
                    record_id=run_id, status="running", created_at=created,
                )
            )  # fmt: skip
        return run_id


def resume(db: Database, run_id: str) -> str:
    task_id = str(uuid.uuid4())
    with db.transaction() as session:
        spec = human_input.resume(session, run_id, task_id)
    assert spec is not None and spec.task_id == task_id
    assert spec.body.resumption == 1 and spec.body.prior == {
        "total_tokens": 42,
        "exceptions_count": 1,
        "elapsed_time": 2.5,
    }
    return task_id


def take_over(db: Database, settings: Settings) -> int:
    async def scenario() -> int:
        backends = build_run_backends(settings)
        try:
            return await take_over_dead_workflow_runs(db, backends, settings)
        finally:
            await backends.aclose()

    return asyncio.run(scenario())


def state(db: Database, run_id: str) -> tuple[str, str | None, list[str]]:
    with db.reads() as session:
        run = session.get(WorkflowRun, run_id)
        assert run is not None
        task = session.scalars(
            select(AsyncTask.status).where(AsyncTask.record_id == run_id)
        ).first()
        forms = list(
            session.scalars(
                select(HumanInputForm.status).where(HumanInputForm.workflow_run_id == run_id)
            )
        )
        return run.status, task, forms


@pytest.mark.timeout(60)
def test_a_run_resumed_long_after_its_start_waits_for_its_worker(
    db: Database, settings: Settings
) -> None:
    run_id = paused_run(db, started_hours_ago=2)
    resume(db, run_id)
    assert take_over(db, settings) == 0  # queued a moment ago: not dead
    assert state(db, run_id) == ("running", "running", ["waiting"])


@pytest.mark.timeout(60)
def test_a_resumed_run_whose_executor_died_ends_with_its_task_and_forms(
    db: Database, settings: Settings
) -> None:
    run_id = paused_run(db, started_hours_ago=2)
    resume(db, run_id)
    with db.transaction() as session:  # queued long ago, never claimed: its worker is gone
        run = session.get(WorkflowRun, run_id)
        assert run is not None
        run.resumed_at = utcnow() - timedelta(hours=1)
    assert take_over(db, settings) == 1
    assert state(db, run_id) == ("failed", "failed", ["expired"])


@pytest.mark.timeout(60)
def test_a_restart_leaves_the_tasks_of_paused_runs_alone(db: Database) -> None:
    run_id = paused_run(db, started_hours_ago=1)
    with db.transaction() as session:
        end_interrupted_runs(session)
    assert state(db, run_id) == ("paused", "running", ["waiting"])


@pytest.mark.timeout(60)
def test_a_restart_leaves_a_queued_resume_to_its_outbox_row_and_ends_a_claimed_one(
    db: Database,
) -> None:
    queued = paused_run(db, started_hours_ago=1)
    claimed = paused_run(db, started_hours_ago=1)
    resume(db, queued)
    resume(db, claimed)
    with db.transaction() as session:  # a worker had claimed this one when the process died
        run = session.get(WorkflowRun, claimed)
        assert run is not None
        run.renewed_at = utcnow()
    with db.transaction() as session:
        end_interrupted_runs(session)
    assert state(db, queued) == ("running", "running", ["waiting"])  # its row runs it again
    assert state(db, claimed) == ("failed", "failed", ["expired"])
