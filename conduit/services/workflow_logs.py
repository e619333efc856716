"""An app's workflow runs read back: the Service API's logs (`GET /v1/workflows/logs`, page by
page, with Dify's filters) and the console's run history (runs scrolled by `last_id`, one run,
its node executions).

There is no log table of its own: a run of the app that has ended, and that no debugger
started, is its log entry (Dify writes a `workflow_app_logs` row when such a run ends), so the
entry's id is the run's. Each run is read with who started it: its end user (Service API) or
its account (the console), one outer join each.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Select, Text, and_, cast, func, or_, select
from sqlalchemy.orm import Session

from conduit.db.models import Account, App, AppMode, EndUser, Membership, WorkflowRun
from conduit.db.models import WorkflowNodeExecution as NodeExecution
from conduit.errors import InvalidParam, NotWorkflowApp
from conduit.services._like import contains
from conduit.services.conversations import is_uuid
from conduit.services.runs.workflow import WorkflowRunNotFound
from conduit.services.workflows import workflow_app

# What a log's `status` filter takes: the statuses a run ends with.
LOG_STATUSES = ("succeeded", "failed", "stopped", "partial-succeeded")
RUNNING = "running"
DEBUGGING = "debugging"  # `triggered_from` of the editor's runs: no log entry (as Dify)
_TRUNCATED = "__truncated__"  # the marker of a stored value cut to size (services/runs)


_RunsQuery = Select[WorkflowRun, EndUser, Account]  # the two outer-joined may be None


@dataclass(frozen=True)
class RunRow:
    """A run and who started it (one of the two, or neither once deleted)."""

    run: WorkflowRun
    end_user: EndUser | None
    account: Account | None


@dataclass(frozen=True)
class LogQuery:
    """`GET /v1/workflows/logs`'s filters, already parsed (`status` is checked here)."""

    page: int = 1
    limit: int = 20
    keyword: str | None = None
    status: str | None = None
    created_before: datetime | None = None
    created_after: datetime | None = None
    end_user_session_id: str | None = None
    account_email: str | None = None


def _with_creators(*conditions: ColumnElement[bool]) -> _RunsQuery:
    return (
        select(WorkflowRun, EndUser, Account)
        .outerjoin(EndUser, EndUser.id == WorkflowRun.end_user_id)
        .outerjoin(Account, Account.id == WorkflowRun.account_id)
        .where(*conditions)
    )


def _rows(session: Session, query: _RunsQuery) -> list[RunRow]:
    return [RunRow(run, end_user, account) for run, end_user, account in session.execute(query)]


# --- the Service API's logs -------------------------------------------------------------------


def list_workflow_logs(session: Session, app: App, query: LogQuery) -> tuple[list[RunRow], int]:
    """The app's ended runs matching `query`, newest first, one page; and how many match."""
    if app.mode not in (AppMode.WORKFLOW, AppMode.ADVANCED_CHAT):
        raise NotWorkflowApp()
    conditions = [
        WorkflowRun.app_id == app.id,
        WorkflowRun.status != RUNNING,
        WorkflowRun.triggered_from != DEBUGGING,
        *_log_filters(query),
    ]
    found = _with_creators(*conditions)
    total = session.scalar(
        select(func.count()).select_from(found.with_only_columns(WorkflowRun.id).subquery())
    )
    page = found.order_by(WorkflowRun.created_at.desc(), WorkflowRun.id.desc())
    rows = _rows(session, page.offset((query.page - 1) * query.limit).limit(query.limit))
    return rows, int(total or 0)


def _log_filters(query: LogQuery) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = []
    if query.status is not None:
        if query.status not in LOG_STATUSES:
            raise InvalidParam(f"status must be one of {', '.join(LOG_STATUSES)}")
        filters.append(WorkflowRun.status == query.status)
    if query.keyword:
        filters.append(_keyword_filter(query.keyword))
    if query.created_before is not None:
        filters.append(WorkflowRun.created_at <= query.created_before)
    if query.created_after is not None:
        filters.append(WorkflowRun.created_at >= query.created_after)
    if query.end_user_session_id is not None:
        filters.append(EndUser.session_id == query.end_user_session_id)
    if query.account_email is not None:
        filters.append(Account.email == query.account_email)
    return filters


def _keyword_filter(keyword: str) -> ColumnElement[bool]:
    """Dify's: the run's inputs or outputs hold the keyword, or its end user's `user` does, or
    it is the run's id. Inputs and outputs are searched as their JSON text, so the keyword is
    written as JSON writes it (a quote or a newline in it escaped; non-ASCII stays raw in both
    orjson's and PostgreSQL's text of a JSON value)."""
    as_json = orjson.dumps(keyword).decode()[1:-1]
    matches = [
        contains(cast(WorkflowRun.inputs, Text), as_json),
        contains(cast(WorkflowRun.outputs, Text), as_json),
        contains(EndUser.session_id, keyword),
    ]
    if is_uuid(keyword):
        matches.append(WorkflowRun.id == keyword)
    return or_(*matches)


def log_view(row: RunRow) -> dict[str, Any]:
    """A log entry as Dify's `workflow_app_log_partial_fields` give it."""
    run = row.run
    return {
        "id": run.id,
        "workflow_run": {
            "id": run.id,
            **_summary(run),
            "error": run.error,
            "triggered_from": run.triggered_from,
        },
        "created_from": run.created_from,
        **_creator(row),
        "created_at": _seconds(run.created_at),
    }


# --- the console's run history ----------------------------------------------------------------


def list_runs(
    session: Session, *, member: Membership, app_id: str, last_id: str | None, limit: int
) -> tuple[list[RunRow], bool]:
    """The app's runs newest first, `limit` of them after `last_id` (a run of the app, else a
    400 naming it); and whether older ones follow."""
    app = workflow_app(session, member, app_id, "read workflow runs")
    conditions = [WorkflowRun.app_id == app.id]
    if last_id is not None:
        last = session.execute(
            select(WorkflowRun.created_at).where(*conditions, WorkflowRun.id == last_id)
        ).first()
        if last is None:
            raise InvalidParam("last_id: Last workflow run not exists")
        conditions.append(
            or_(
                WorkflowRun.created_at < last.created_at,
                and_(WorkflowRun.created_at == last.created_at, WorkflowRun.id < last_id),
            )
        )
    query = _with_creators(*conditions).order_by(
        WorkflowRun.created_at.desc(), WorkflowRun.id.desc()
    )
    rows = _rows(session, query.limit(limit + 1))
    return rows[:limit], len(rows) > limit


def get_run(session: Session, *, member: Membership, app_id: str, run_id: str) -> RunRow:
    """One run of the app (404 for another app's, or another workspace's)."""
    app = workflow_app(session, member, app_id, "read workflow runs")
    found = _rows(session, _with_creators(WorkflowRun.app_id == app.id, WorkflowRun.id == run_id))
    if not found:
        raise WorkflowRunNotFound()
    return found[0]


def node_executions(
    session: Session, *, member: Membership, app_id: str, run_id: str
) -> tuple[RunRow, list[NodeExecution]]:
    """The run and its node executions in the order they started (`index`)."""
    row = get_run(session, member=member, app_id=app_id, run_id=run_id)
    executions = session.scalars(
        select(NodeExecution)
        .where(NodeExecution.workflow_run_id == row.run.id)
        .order_by(NodeExecution.index, NodeExecution.created_at)
    )
    return row, list(executions)


def run_list_item(row: RunRow) -> dict[str, Any]:
    """A run as the console's run history lists it."""
    run = row.run
    return {
        "id": run.id,
        **_summary(run),
        "created_by_end_user": _end_user_view(row.end_user),
        "created_by_account": _account_view(row.account),
    }


def run_detail(row: RunRow) -> dict[str, Any]:
    """A run as the console shows one (Dify's `workflow_run_detail_fields` without `graph`)."""
    run = row.run
    return {
        "id": run.id,
        "workflow_id": run.workflow_id,
        **_summary(run),
        "inputs": run.inputs or {},
        "outputs": run.outputs or {},
        "error": run.error,
        **_creator(row),
    }


def node_execution_view(execution: NodeExecution, row: RunRow) -> dict[str, Any]:
    """A node execution as Dify's console gives it; `*_truncated` say a value was cut when
    stored (it then holds a marker with the value's start)."""
    return {
        "id": execution.id,
        "index": execution.index,
        "predecessor_node_id": execution.predecessor_node_id,
        "node_id": execution.node_id,
        "node_type": execution.node_type,
        "title": execution.title,
        "inputs": execution.inputs,
        "process_data": execution.process_data,
        "outputs": execution.outputs,
        "status": execution.status,
        "error": execution.error,
        "elapsed_time": execution.elapsed_time,
        "execution_metadata": execution.execution_metadata or {},
        "extras": {},
        "created_at": _seconds(execution.created_at),
        "finished_at": _seconds(execution.finished_at),
        "iteration_id": execution.iteration_id,
        "loop_id": execution.loop_id,
        **_creator(row),
        "inputs_truncated": _truncated(execution.inputs),
        "outputs_truncated": _truncated(execution.outputs),
        "process_data_truncated": _truncated(execution.process_data),
    }


# --- shapes -----------------------------------------------------------------------------------


def _summary(run: WorkflowRun) -> dict[str, Any]:
    """What every view of a run shows: its version, status, figures and times."""
    return {
        "version": run.version,
        "status": run.status,
        "elapsed_time": run.elapsed_time,
        "total_tokens": run.total_tokens,
        "total_steps": run.total_steps,
        "created_at": _seconds(run.created_at),
        "finished_at": _seconds(run.finished_at),
        "exceptions_count": run.exceptions_count,
    }


def _seconds(when: datetime | None) -> int | None:
    return int(when.timestamp()) if when is not None else None


def _truncated(value: Any) -> bool:
    return isinstance(value, dict) and value.get(_TRUNCATED) is True


def _creator(row: RunRow) -> dict[str, Any]:
    return {
        "created_by_role": "account" if row.run.account_id else "end_user",
        "created_by_account": _account_view(row.account),
        "created_by_end_user": _end_user_view(row.end_user),
    }


def _end_user_view(end_user: EndUser | None) -> dict[str, Any] | None:
    if end_user is None:
        return None
    return {
        "id": end_user.id,
        "type": end_user.type,
        "is_anonymous": end_user.is_anonymous,
        "session_id": end_user.session_id,
    }


def _account_view(account: Account | None) -> dict[str, Any] | None:
    if account is None:
        return None
    return {"id": account.id, "name": account.name, "email": account.email}
