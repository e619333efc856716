"""A workflow run's end as its stored row tells it: the `workflow_finished` event its log
ended with, rebuilt for when the log has expired (a repeat under an Idempotency-Key, a
replay, an async task's result and callback, a takeover's end of the log)."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from conduit.core.apps.workflow import WorkflowResult, finished_data, paused_data
from conduit.core.runs.kinds import Event
from conduit.core.workflow.human_input import PendingForm
from conduit.db.models import HumanInputForm, WorkflowRun

PAUSED = "paused"


def stored_finish_event(row: WorkflowRun) -> Event:
    """A finished run's `workflow_finished`, from its row (for once its log has expired)."""
    result = WorkflowResult(
        task_id=row.task_id or "",
        tenant_id=row.tenant_id,
        app_id=row.app_id,
        workflow_run_id=row.id,
        workflow_id=row.workflow_id,
        status=cast(Any, row.status),
        outputs=dict(row.outputs or {}),
        error=row.error,
        elapsed_time=row.elapsed_time,
        total_tokens=row.total_tokens,
        total_steps=row.total_steps,
        exceptions_count=row.exceptions_count,
        created_at=int(row.created_at.timestamp()),
        finished_at=(row.finished_at or row.created_at).timestamp(),
        created_by={"id": row.end_user_id},
    )
    payload = {
        "event": "workflow_finished",
        "workflow_run_id": row.id,
        "task_id": row.task_id,
        "data": finished_data(result),
    }
    return "workflow_finished", payload


def stored_end_events(session: Session, row: WorkflowRun) -> list[Event]:
    """How a run's log ended, from its rows: `workflow_finished`; for a `paused` run, each
    waiting form's `human_input_required`, then `workflow_paused`."""
    if row.status != PAUSED:
        return [stored_finish_event(row)]
    forms = [
        PendingForm.from_json(definition)
        for definition in session.scalars(
            select(HumanInputForm.definition).where(
                HumanInputForm.workflow_run_id == row.id, HumanInputForm.status == "waiting"
            )
        )
    ]
    result = WorkflowResult(
        task_id=row.task_id or "",
        tenant_id=row.tenant_id,
        app_id=row.app_id,
        workflow_run_id=row.id,
        workflow_id=row.workflow_id,
        status="paused",
        outputs={},
        error=None,
        elapsed_time=row.elapsed_time,
        total_tokens=row.total_tokens,
        total_steps=row.total_steps,
        exceptions_count=row.exceptions_count,
        created_at=int(row.created_at.timestamp()),
        finished_at=row.created_at.timestamp(),
        created_by={"id": row.end_user_id},
        forms=forms,
    )

    def event(name: str, data: dict[str, Any]) -> Event:
        return name, {
            "event": name,
            "workflow_run_id": row.id,
            "task_id": row.task_id,
            "data": data,
        }

    return [
        *(event("human_input_required", form.required()) for form in forms),
        event("workflow_paused", paused_data(result)),
    ]
