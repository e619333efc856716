"""The only home of workflow run SQL: a run's end (its row, its node executions, a chatflow
turn's message and variables, an async run's task — one transaction), its lease with the
node executions of each checkpoint, its claim by a worker, and the ending of runs whose
executor is gone.

Node executions are written in batches: those that ended since the last checkpoint go with
each lease renewal (about every second), the rest with the run's end — never one write per
node on the engine's path. Stored inputs, outputs and process data over `MAX_STORED_VALUE`
bytes of JSON are cut, with a marker saying so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import Connection, Table, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from conduit.core.apps.workflow import WorkflowResult, WorkflowRunBody
from conduit.core.runs.backends import RunBackends
from conduit.core.runs.spec import RunSpec
from conduit.core.runs.status import RunStatus
from conduit.core.workflow.engine import Restored
from conduit.core.workflow.events import NodeExecution
from conduit.db.models import (
    AsyncTask,
    HumanInputForm,
    Message,
    WorkflowNodeExecution,
    WorkflowRun,
    utcnow,
)
from conduit.errors import RunInterrupted
from conduit.infra.db import Database
from conduit.infra.settings import Settings
from conduit.services.runs import task_store, tasks
from conduit.services.runs.chatflow import finish_turn
from conduit.services.runs.start import app_slot_key
from conduit.services.runs.workflow_events import stored_finish_event

logger = logging.getLogger(__name__)

_RUNS = cast(Table, WorkflowRun.__table__)
_NODES = cast(Table, WorkflowNodeExecution.__table__)
_TASKS = cast(Table, AsyncTask.__table__)
_FORMS = cast(Table, HumanInputForm.__table__)
PAUSED = "paused"
MAX_STORED_VALUE = 64 * 1024
INTERRUPTED = RunInterrupted.default_message
HANDLES = "__handles"
# A workflow run whose worker died is left this long past its lease for the broker to deliver
# it again (it then resumes from its ended nodes) before the takeover ends it.
REDELIVERY_GRACE = 3.0  # × the lease
# A workflow run's status as its async task ends with it.
TASK_STATUS = {"partial-succeeded": "succeeded"}


def _cut(value: Any) -> Any:
    """A value to store: as it is, or a marker with its start when its JSON is too big."""
    if value is None:
        return None
    encoded = orjson.dumps(value, default=str)
    if len(encoded) <= MAX_STORED_VALUE:
        return value
    return {
        "__truncated__": True,
        "size": len(encoded),
        "preview": encoded[: MAX_STORED_VALUE // 4].decode(errors="ignore"),
    }


def _node_row(spec_ids: Mapping[str, Any], execution: NodeExecution) -> dict[str, Any]:
    metadata = dict(execution.metadata)
    if execution.iteration_index is not None:
        metadata["iteration_index"] = execution.iteration_index
    if execution.loop_index is not None:
        metadata["loop_index"] = execution.loop_index
    if execution.handles:
        metadata[HANDLES] = execution.handles  # what a resumed run follows
    return {
        **spec_ids,
        "id": execution.id,
        "index": execution.index,
        "predecessor_node_id": execution.predecessor_node_id,
        "node_id": execution.node_id,
        "node_type": execution.node_type,
        "title": execution.title[:255],
        "iteration_id": execution.iteration_id,
        "loop_id": execution.loop_id,
        "inputs": _cut(execution.inputs),
        "process_data": _cut(execution.process_data),
        "outputs": _cut(execution.outputs),
        "status": execution.status,
        "error": execution.error,
        "elapsed_time": execution.elapsed_time,
        # Each value cut on its own (a node's own record, e.g. an agent's log, may be big): the
        # engine's keys (tokens, the edges a resumed run follows, the item's index) stay whole.
        "execution_metadata": {key: _cut(value) for key, value in metadata.items()},
        "created_at": datetime.fromtimestamp(execution.created_at, UTC),
        "finished_at": (
            datetime.fromtimestamp(execution.finished_at, UTC) if execution.finished_at else None
        ),
    }


def _with_kept(result: WorkflowResult) -> dict[str, Any] | None:
    """A paused run's spec, with the outputs of its ended top-level nodes that are too big to
    store whole in their records (`_cut`): what resumes it takes them from there."""
    spec = result.resume_spec
    if spec is None:
        return None
    kept = dict(spec["body"].get("kept") or {})
    for execution in result.node_executions:
        if (
            execution.iteration_id is None
            and execution.loop_id is None
            and execution.status in ("succeeded", "exception")
            and execution.handles
            and execution.outputs is not None
            and _cut(execution.outputs) is not execution.outputs
        ):
            kept[execution.node_id] = {"outputs": execution.outputs, "handles": execution.handles}
    if not kept:
        return spec
    return {**spec, "body": {**spec["body"], "kept": kept}}


def _ids_of(spec: RunSpec) -> dict[str, str]:
    body: WorkflowRunBody = spec.body
    return {
        "tenant_id": spec.tenant_id,
        "app_id": spec.app_id,
        "workflow_id": body.workflow_id,
        "workflow_run_id": body.workflow_run_id,
    }


def _write_nodes(
    connection: Connection, common: Mapping[str, str], executions: Sequence[NodeExecution]
) -> None:
    """Insert the executions not stored yet (a checkpoint may have stored some)."""
    if not executions:
        return
    ids = [e.id for e in executions]
    stored = set(connection.execute(select(_NODES.c.id).where(_NODES.c.id.in_(ids))).scalars())
    fresh = [e for e in executions if e.id not in stored]
    if fresh:
        connection.execute(insert(_NODES), [_node_row(common, e) for e in fresh])


_FINISH = (
    update(_RUNS)
    .where(_RUNS.c.id == bindparam("run_id"), _RUNS.c.status == RunStatus.RUNNING.value)
    .values(
        status=bindparam("new_status"),
        outputs=bindparam("new_outputs"),
        error=bindparam("new_error"),
        elapsed_time=bindparam("new_elapsed"),
        total_tokens=bindparam("new_tokens"),
        total_steps=bindparam("new_steps"),
        exceptions_count=bindparam("new_exceptions"),
        finished_at=bindparam("new_finished_at"),
    )
)


class WorkflowRunStore:
    """The `WorkflowStore`: a run's end (its row and its node executions, one transaction),
    its lease with the node executions of each checkpoint, its claim by a worker."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._resumed: set[str] = set()

    async def finish(self, result: WorkflowResult) -> dict[str, Any]:
        return await asyncio.to_thread(self._finish, result)

    def _finish(self, result: WorkflowResult) -> dict[str, Any]:
        if result.status == PAUSED:
            self._pause(result)
            return {}
        with self._db.transaction() as session:
            connection = session.connection()
            written = connection.execute(
                _FINISH,
                {
                    "run_id": result.workflow_run_id,
                    "new_status": result.status,
                    "new_outputs": _cut(result.outputs) or {},
                    "new_error": result.error,
                    "new_elapsed": result.elapsed_time,
                    "new_tokens": result.total_tokens,
                    "new_steps": result.total_steps,
                    "new_exceptions": result.exceptions_count,
                    "new_finished_at": datetime.fromtimestamp(result.finished_at, UTC),
                },
            )
            if not getattr(written, "rowcount", 0):
                exists = connection.execute(
                    select(_RUNS.c.status).where(_RUNS.c.id == result.workflow_run_id)
                ).scalar()
                if exists is None:
                    return {}  # its app was deleted meanwhile
                raise RunInterrupted(
                    f"The run had ended already ({exists}): it was taken over meanwhile."
                )
            _write_nodes(connection, result.ids(), result.node_executions)
            if result.resumed:
                # It paused before: a form still waiting (another node's, never reached) can
                # no longer be answered, and no answer waits to resume it.
                close_forms(connection, result.workflow_run_id)
            stored: dict[str, Any] = {}
            if result.chat is not None:
                stored = finish_turn(connection, result)
            if result.asynchronous:
                tasks.end_run_task(
                    session,
                    result.async_task_id or result.task_id,
                    TASK_STATUS.get(result.status, result.status),
                    error_code=(result.error_code or "workflow_failed")
                    if result.status == "failed"
                    else None,
                    error_message=result.error if result.status == "failed" else None,
                )
        return stored

    def _pause(self, result: WorkflowResult) -> None:
        """The run waits on its forms: its row `paused` with the spec that resumes it, its
        node executions so far (the waiting ones `paused`), each form stored `waiting` (a
        form it showed before keeps its token), all in one transaction: a form's token is
        valid from this commit, and the events that show it are written after it."""
        now = utcnow()
        with self._db.transaction() as session:
            connection = session.connection()
            written = connection.execute(
                update(_RUNS)
                .where(
                    _RUNS.c.id == result.workflow_run_id,
                    _RUNS.c.status == RunStatus.RUNNING.value,
                )
                .values(
                    status=PAUSED,
                    resume_spec=_with_kept(result),
                    elapsed_time=result.elapsed_time,
                    total_tokens=result.total_tokens,
                    total_steps=result.total_steps,
                    exceptions_count=result.exceptions_count,
                    renewed_at=None,
                )
            )
            if not getattr(written, "rowcount", 0):
                exists = connection.execute(
                    select(_RUNS.c.status).where(_RUNS.c.id == result.workflow_run_id)
                ).scalar()
                if exists is None:
                    return  # its app was deleted meanwhile
                raise RunInterrupted(
                    f"The run had ended already ({exists}): it was taken over meanwhile."
                )
            _write_nodes(connection, result.ids(), result.node_executions)
            # Answers this execution took up (their nodes ended here) resume nothing more.
            answered = [
                e.node_id
                for e in result.node_executions
                if e.node_type == "human-input" and e.status == "succeeded"
            ]
            if answered:
                connection.execute(
                    update(_FORMS)
                    .where(
                        _FORMS.c.workflow_run_id == result.workflow_run_id,
                        _FORMS.c.node_id.in_(answered),
                    )
                    .values(pending_resume=False)
                )
            shown = set(
                connection.execute(
                    select(_FORMS.c.node_id).where(
                        _FORMS.c.workflow_run_id == result.workflow_run_id
                    )
                ).scalars()
            )
            fresh = [form for form in result.forms if form.node_id not in shown]
            if fresh:
                connection.execute(
                    insert(_FORMS),
                    [
                        {
                            "id": form.id,
                            "tenant_id": result.tenant_id,
                            "app_id": result.app_id,
                            "workflow_run_id": result.workflow_run_id,
                            "task_id": result.task_id,
                            "node_id": form.node_id,
                            "node_title": form.node_title[:255],
                            "token": form.token,
                            "status": "waiting",
                            "definition": form.to_json(),
                            "expiration_time": datetime.fromtimestamp(form.expiration_time, UTC),
                            "created_at": now,
                            "pending_resume": False,
                        }
                        for form in fresh
                    ],
                )

    async def renew_many(
        self, runs: Sequence[tuple[RunSpec, list[NodeExecution] | None]]
    ) -> set[str]:
        return await asyncio.to_thread(self._renew, runs)

    def _renew(self, runs: Sequence[tuple[RunSpec, list[NodeExecution] | None]]) -> set[str]:
        gone: set[str] = set()
        with self._db.transaction() as session:
            connection = session.connection()
            now = utcnow()
            for spec, fresh in runs:
                renewed = connection.execute(
                    update(_RUNS)
                    .where(
                        _RUNS.c.id == spec.body.workflow_run_id,
                        _RUNS.c.status == RunStatus.RUNNING.value,
                    )
                    .values(renewed_at=now)
                )
                if not getattr(renewed, "rowcount", 0):
                    gone.add(spec.task_id)
                    continue
                if fresh:
                    _write_nodes(connection, _ids_of(spec), fresh)
        return gone

    async def claim(self, spec: RunSpec, lease_seconds: float) -> bool:
        """Claim the run; one that another executor held until lately (a worker killed, its
        delivery handed out again at once, as RabbitMQ does) is claimed once that executor's
        lease has lapsed, if nobody renewed it meanwhile: the run then resumes here."""
        task_id = spec.task_id if spec.asynchronous else None
        run_id = spec.body.workflow_run_id
        claimed, wait = await asyncio.to_thread(self._claim, run_id, lease_seconds, task_id)
        if claimed or wait is None:
            return claimed
        await asyncio.sleep(wait)
        claimed, _ = await asyncio.to_thread(self._claim, run_id, lease_seconds, task_id)
        return claimed

    def resuming(self, run_id: str) -> bool:
        """Whether this process claimed the run after another executor had held it (its
        worker died; the broker delivered it again): it resumes from its ended nodes."""
        if run_id in self._resumed:
            self._resumed.discard(run_id)
            return True
        return False

    async def restored_nodes(self, run_id: str) -> dict[str, Restored]:
        return await asyncio.to_thread(self._restored_nodes, run_id)

    def _restored_nodes(self, run_id: str) -> dict[str, Restored]:
        """The top-level nodes the run's earlier execution ended (succeeded, or failed into an
        error strategy) and stored whole (a cut value cannot be taken up again: that node runs
        again). Containers' children are not kept: an iteration or loop runs again whole."""
        with self._db.reads() as session:
            rows = session.execute(
                select(_NODES.c.node_id, _NODES.c.outputs, _NODES.c.execution_metadata).where(
                    _NODES.c.workflow_run_id == run_id,
                    _NODES.c.iteration_id.is_(None),
                    _NODES.c.loop_id.is_(None),
                    _NODES.c.status.in_(("succeeded", "exception")),
                )
            )
            found: dict[str, Restored] = {}
            for node_id, outputs, metadata in rows:
                handles = (metadata or {}).get(HANDLES)
                if not handles or (isinstance(outputs, dict) and outputs.get("__truncated__")):
                    continue
                found[str(node_id)] = Restored(outputs=dict(outputs or {}), handles=handles)
            return found

    def _claim(
        self, run_id: str, lease_seconds: float, task_id: str | None
    ) -> tuple[bool, float | None]:
        """Whether the run was claimed; if not, and an executor holds its lease, how long
        until that lease lapses (None: it ended, or nobody holds it)."""
        now = utcnow()
        with self._db.statements() as connection:
            row = connection.execute(
                select(_RUNS.c.renewed_at, _RUNS.c.status).where(_RUNS.c.id == run_id)
            ).first()
            if row is None or row.status != RunStatus.RUNNING.value:
                return False, None
            held = row.renewed_at
            found = connection.execute(
                update(_RUNS)
                .where(
                    _RUNS.c.id == run_id,
                    _RUNS.c.status == RunStatus.RUNNING.value,
                    or_(
                        _RUNS.c.renewed_at.is_(None),
                        _RUNS.c.renewed_at < now - timedelta(seconds=lease_seconds),
                    ),
                )
                .values(renewed_at=now)
            )
            claimed = bool(getattr(found, "rowcount", 0))
            if not claimed:
                if held is None:
                    return False, None
                left = (held + timedelta(seconds=lease_seconds) - now).total_seconds()
                return False, min(max(left, 0.0), lease_seconds) + 0.1
            if held is not None:
                self._resumed.add(run_id)
            if task_id is not None:
                task_store.start_task(connection, task_id)
            return True, None


def close_forms(connection: Connection, run_id: str) -> None:
    """The run ended: its forms still waiting can no longer be answered (`expired`), and no
    answer is left to resume it."""
    connection.execute(
        update(_FORMS)
        .where(_FORMS.c.workflow_run_id == run_id, _FORMS.c.status == "waiting")
        .values(status="expired")
    )
    connection.execute(
        update(_FORMS)
        .where(_FORMS.c.workflow_run_id == run_id, _FORMS.c.pending_resume.is_(True))
        .values(pending_resume=False)
    )


PURGE_BATCH = 500  # workflow runs in one transaction of the logs' retention
PURGE_NODE_BATCH = 5_000  # and node executions (an iteration's run may have thousands)


def logs_horizon(settings: Settings) -> datetime | None:
    """Workflow runs that finished before this are removed (None: kept for good): the logs'
    retention, never shorter than an async run's task's (its result is read from its run)."""
    days = settings.runs.log_retention_days
    if not days:
        return None
    kept = max(timedelta(days=days), timedelta(hours=settings.runs.async_retention_hours))
    return utcnow() - kept


def purge_finished_workflow_runs(
    session: Session,
    *,
    finished_before: datetime,
    batch: int = PURGE_BATCH,
    node_batch: int = PURGE_NODE_BATCH,
) -> tuple[int, bool]:
    """One transaction's share of the logs' retention: up to `batch` workflow runs that
    finished before `finished_before` (oldest first; a running one has no end yet), none whose
    async task is still kept (its result is read from its run), with their node executions,
    at most `node_batch` of those: a run goes once its last one has. Returns how many runs
    went, and whether there may be more to do."""
    # (a workflow app's task names its run, a chatflow's its message: the run's task id)
    task_kept = (
        select(_TASKS.c.id)
        .where(or_(_TASKS.c.record_id == _RUNS.c.id, _TASKS.c.id == _RUNS.c.task_id))
        .exists()
        .correlate(_RUNS)
    )
    ids = list(
        session.scalars(
            select(_RUNS.c.id)
            .where(_RUNS.c.finished_at < finished_before, ~task_kept)
            .order_by(_RUNS.c.finished_at)
            .limit(batch)
        )
    )
    if not ids:
        return 0, False
    nodes = (
        select(_NODES.c.id).where(_NODES.c.workflow_run_id.in_(ids)).limit(node_batch)
    ).scalar_subquery()
    removed = session.execute(delete(_NODES).where(_NODES.c.id.in_(nodes)))
    if int(getattr(removed, "rowcount", 0) or 0) >= node_batch:
        return 0, True  # their nodes take more transactions than this one
    session.execute(delete(_RUNS).where(_RUNS.c.id.in_(ids)))
    return len(ids), len(ids) == batch


def end_interrupted_workflow_runs(session: Session) -> int:
    """End every `running` workflow run as failed (a process that alone ran them, at start),
    but a resumed one no executor claimed yet: its execution is an outbox row, which the
    restart hands out again (`recover_unfinished`), so the answer that resumed it is not lost."""
    now = utcnow()
    ending = (_RUNS.c.status == RunStatus.RUNNING.value) & ~(
        _RUNS.c.renewed_at.is_(None) & _RUNS.c.resumed_at.is_not(None)
    )
    resumed = list(
        session.scalars(select(_RUNS.c.id).where(ending, _RUNS.c.resumed_at.is_not(None)))
    )
    result = session.execute(
        update(_RUNS)
        .where(ending)
        .values(status=RunStatus.FAILED.value, error=INTERRUPTED, finished_at=now)
    )
    for run_id in resumed:
        close_forms(session.connection(), run_id)
    return int(getattr(result, "rowcount", 0) or 0)


async def take_over_dead_workflow_runs(
    db: Database, backends: RunBackends, settings: Settings
) -> int:
    """End the workflow runs whose lease lapsed (or that were never renewed long after the
    longest a run may take) as failed, interrupted; only the winner of the guarded UPDATE
    ends the run's log with `workflow_finished` (failed)."""
    now = utcnow()
    lease = settings.runs.lease_seconds
    lapsed_before = now - timedelta(seconds=lease * (1 + REDELIVERY_GRACE))
    never_before = now - timedelta(seconds=settings.runs.max_seconds + 60)
    rows = await asyncio.to_thread(_lapsed_runs, db, lapsed_before, never_before)
    taken = 0
    for row in rows:
        ended = await asyncio.to_thread(_end_lapsed, db, row.id, lapsed_before, never_before)
        if ended is None:
            continue
        taken += 1
        if row.task_id:
            spec_like = {"workflow_run_id": row.id, "task_id": row.task_id}
            event, payload = stored_finish_event(ended)
            try:
                await backends.eventlog.take_over(row.task_id, [(event, payload)])
                await backends.eventlog.close(row.task_id)
            except Exception:
                logger.info("workflow run %s: its log is gone", spec_like["workflow_run_id"])
            try:
                await backends.limiter.release(app_slot_key(row.app_id), row.task_id)
                await backends.stops.forget(row.task_id)
            except Exception:
                logger.info("workflow run %s: releasing its slot failed", row.id)
    if taken:
        logger.warning("took over %d workflow run(s) whose executor is gone", taken)
    return taken


def _lapsed_clause(lapsed_before: datetime, never_before: datetime) -> Any:
    # Never renewed: counted from its creation, or from its last resume (queued again).
    queued = func.coalesce(_RUNS.c.resumed_at, _RUNS.c.created_at)
    return (_RUNS.c.status == RunStatus.RUNNING.value) & or_(
        _RUNS.c.renewed_at < lapsed_before,
        (_RUNS.c.renewed_at.is_(None)) & (queued < never_before),
    )


def _lapsed_runs(db: Database, lapsed_before: datetime, never_before: datetime) -> list[Any]:
    with db.statements() as connection:
        return list(
            connection.execute(
                select(_RUNS.c.id, _RUNS.c.task_id, _RUNS.c.app_id)
                .where(_lapsed_clause(lapsed_before, never_before))
                .limit(100)
            )
        )


def _end_lapsed(
    db: Database, run_id: str, lapsed_before: datetime, never_before: datetime
) -> WorkflowRun | None:
    now = utcnow()
    with db.transaction() as session:
        found = session.execute(
            update(_RUNS)
            .where(_RUNS.c.id == run_id, _lapsed_clause(lapsed_before, never_before))
            .values(status=RunStatus.FAILED.value, error=INTERRUPTED, finished_at=now)
        )
        if not getattr(found, "rowcount", 0):
            return None
        row = session.get(WorkflowRun, run_id)
        if row is not None:
            if row.resumed_at is not None:
                close_forms(session.connection(), run_id)
            task_id = task_store.workflow_task_id(session.connection(), run_id)
            if task_id is not None:  # an async run's task (and callback) ends with it
                tasks.end_run_task(
                    session,
                    task_id,
                    RunStatus.FAILED.value,
                    error_code=RunInterrupted.code,
                    error_message=INTERRUPTED,
                )
            if row.message_id is not None:  # a chatflow's turn ends with it
                session.execute(
                    update(Message)
                    .where(Message.id == row.message_id, Message.status == RunStatus.RUNNING.value)
                    .values(status=RunStatus.FAILED.value, error=INTERRUPTED, finished_at=now)
                )
            session.expunge(row)
        return row
