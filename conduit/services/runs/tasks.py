"""Async runs' tasks (`response_mode: "async"`): what a poller sees of them, how they end, and
how long they are kept.

A task is written with its run's rows (`chat.write_run`), `running` once a worker claims the
run (`MessageStore.claim`), and ended in the same transaction that stores the run's end —
whoever stores it: the run's own finish, the takeover of a run whose executor died, a
restarted embedded server ending its leftover runs (`end_run_task`). Its result is the
blocking-mode body of its run, rebuilt from the run's stored record, so a poller, the
callback and a blocking request all see the same body. `CONDUIT_RUNS_ASYNC_RETENTION_HOURS`
after its end the beat's `purge_expired_tasks` removes it (with its Idempotency-Key and its
callback deliveries); its time-ordered id still tells a status request that it expired.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Row, Table, delete, select, update
from sqlalchemy.orm import Session

from conduit.core.apps.chat import BlockingEnd, BlockingReply
from conduit.core.apps.workflow import KIND as WORKFLOW
from conduit.core.apps.workflow import BlockingWorkflowReply
from conduit.core.runs.spec import id_time
from conduit.db.models import App, AsyncTask, EndUser, Message, WorkflowRun, utcnow
from conduit.errors import TaskExpired, TaskNotFound
from conduit.infra.settings import Settings
from conduit.services import webhooks
from conduit.services.end_users import SERVICE_API
from conduit.services.runs import task_store
from conduit.services.runs.chat import message_events
from conduit.services.runs.workflow_events import stored_end_events, stored_finish_event

_MESSAGES = cast(Table, Message.__table__)
_WORKFLOW_RUNS = cast(Table, WorkflowRun.__table__)
PURGE_BATCH = 2000


def _unix(value: Any) -> int | None:
    return None if value is None else int(value.timestamp())


def task_outcome(session: Session, task: AsyncTask, app: App) -> BlockingEnd | None:
    """The run's end as a blocking request would have been answered (None while it runs)."""
    if task.kind == WORKFLOW:
        return _workflow_outcome(session.get(WorkflowRun, task.record_id), task.id)
    return _outcome(app, session.get(Message, task.record_id), task.id)


def _outcome(app: App, message: Message | None, task_id: str) -> BlockingEnd | None:
    events = message_events(app, message, task_id)
    if events is None:
        return None
    reply = BlockingReply(app.mode.value)
    for name, payload in events:
        end = reply.add(name, cast(dict[str, Any], payload))
        if end is not None:
            return end
    return None


def _workflow_outcome(run: WorkflowRun | None, task_id: str) -> BlockingEnd | None:
    """A workflow run's blocking body (`{task_id, workflow_run_id, data}`), once it ended;
    `task_id` its async task's (a run resumed after a pause ran its end under another)."""
    if run is None or run.status in ("running", "paused"):
        return None
    name, payload = stored_finish_event(run)
    body = BlockingWorkflowReply().add(name, cast(dict[str, Any], payload))
    return BlockingEnd(body={**body, "task_id": task_id} if body is not None else None)


def _ending(
    outcome: BlockingEnd | None, error_code: str | None, error_message: str | None
) -> dict[str, Any]:
    """An ended task's `result` (the blocking body) or its `error`."""
    if outcome is not None and outcome.body is not None:
        return {"result": outcome.body}
    if outcome is not None and outcome.error is not None:
        return {"error": {"code": outcome.error["code"], "message": outcome.error["message"]}}
    # Its record is gone (its conversation deleted): say so rather than nothing.
    return {
        "error": {
            "code": error_code or "result_unavailable",
            "message": error_message or "The run's record was deleted.",
        }
    }


def describe(session: Session, task: AsyncTask, app: App) -> dict[str, Any]:
    """`GET /v1/tasks/{task_id}`'s body: status, times, the callback's deliveries, and once it
    ended its result (the blocking body) or its error."""
    view: dict[str, Any] = {
        "task_id": task.id,
        "status": task.status,
        "created_at": _unix(task.created_at),
        "started_at": _unix(task.started_at),
        "finished_at": _unix(task.finished_at),
    }
    callback = webhooks.callback_summary(session, task.id)
    if callback is not None or task.callback_url:
        view["callback"] = callback or {
            "url": task.callback_url,
            "status": "pending",
            "attempts": 0,
            "last_status": None,
            "delivered_at": None,
        }
    if task.status in task_store.UNFINISHED:
        if task.kind == "workflow" and task.status == task_store.RUNNING:
            run = session.get(WorkflowRun, task.record_id)
            if run is not None and run.status == "paused":
                # Waiting on a human-input form: its result so far is the paused body a
                # blocking run gives (the forms' tokens).
                view["status"] = "paused"
                for name, payload in stored_end_events(session, run):
                    body = BlockingWorkflowReply().add(name, cast(dict[str, Any], payload))
                    if body is not None:
                        view["result"] = {**body, "task_id": task.id}
        return view
    outcome = task_outcome(session, task, app)
    view.update(_ending(outcome, task.error_code, task.error_message))
    return view


def find_task(
    session: Session,
    *,
    app: App,
    user: str,
    task_id: str,
    settings: Settings,
    user_type: str = SERVICE_API,
) -> AsyncTask:
    """`user`'s task of `app`; 404 otherwise — `task_expired` when its id says it was made
    before the retention's horizon (removed, or never a task: either way it is not here)."""
    task = session.scalars(
        select(AsyncTask)
        .join(EndUser, EndUser.id == AsyncTask.end_user_id)
        .where(
            AsyncTask.id == task_id,
            AsyncTask.app_id == app.id,
            EndUser.type == user_type,
            EndUser.session_id == user,
        )
    ).first()
    if task is not None:
        return task
    made = id_time(task_id)
    horizon = time.time() - settings.runs.async_retention_hours * 3600
    if made is not None and made < horizon:
        raise TaskExpired()
    raise TaskNotFound()


def end_run_task(
    session: Session,
    task_id: str,
    status: str,
    *,
    error_code: str | None = None,
    error_message: str | None = None,
) -> bool:
    """In the transaction that stores a run's end, after its record: end its task if it is an
    async run's, and queue its callback (False when it is not an async run's, or its task had
    ended already: its callback was queued then). On the path of every callback: the task
    comes back from its UPDATE, and its app, end user and record are read in one query."""
    task = task_store.end_task(
        session.connection(), task_id, status, error_code=error_code, error_message=error_message
    )
    if task is None:
        return False
    if not task.callback_url:
        return True
    found = session.execute(
        select(App, EndUser.session_id, Message)
        .select_from(App)
        .outerjoin(EndUser, EndUser.id == task.end_user_id)
        .outerjoin(Message, Message.id == task.record_id)
        .where(App.id == task.app_id)
    ).first()
    if found is None:
        return True  # its app was deleted meanwhile: nobody to call back for
    app, user, message = found
    outcome = (
        _workflow_outcome(session.get(WorkflowRun, task.record_id), task.id)
        if task.kind == WORKFLOW
        else _outcome(app, message, task.id)
    )
    webhooks.enqueue_callback(
        session,
        app_id=app.id,
        task_id=task.id,
        url=task.callback_url,
        payload=callback_payload(task, app, user=user, outcome=outcome),
    )
    return True


def callback_payload(
    task: Row[Any], app: App, *, user: str | None, outcome: BlockingEnd | None
) -> dict[str, Any]:
    """What the callback of an ended task says: `{task_id, status, output | error, app_id,
    user, created_at, finished_at}` (`output`: the blocking body, as the task's `result` in
    `describe`)."""
    ending = _ending(outcome, task.error_code, task.error_message)
    payload: dict[str, Any] = {"task_id": task.id, "status": task.status}
    if "result" in ending:
        payload["output"] = ending["result"]
    else:
        payload["error"] = ending["error"]
    payload.update(
        {
            "app_id": app.id,
            "user": user,
            "created_at": _unix(task.created_at),
            "finished_at": _unix(task.finished_at),
        }
    )
    return payload


def purge_expired_tasks(session: Session, settings: Settings) -> int:
    """Remove the tasks that ended before the retention's horizon, and forget their runs'
    Idempotency-Keys (a key lives as long as its task); returns how many."""
    horizon = utcnow() - timedelta(hours=settings.runs.async_retention_hours)
    expired = select(AsyncTask.id, AsyncTask.record_id).where(AsyncTask.finished_at < horizon)
    rows = session.execute(expired.limit(PURGE_BATCH)).all()
    if not rows:
        return 0
    task_ids = [str(task_id) for task_id, _ in rows]
    record_ids = [str(record_id) for _, record_id in rows]
    for records in (_MESSAGES, _WORKFLOW_RUNS):  # a chat or completion run's, a workflow's
        session.execute(
            update(records)
            .where(records.c.id.in_(record_ids), records.c.idempotency_key.is_not(None))
            .values(idempotency_key=None, request_hash=None)
        )
    session.execute(delete(AsyncTask).where(AsyncTask.id.in_(task_ids)))
    return len(task_ids)


def purge_expired_deliveries(session: Session, settings: Settings) -> int:
    """Remove the callback deliveries (delivered or dead) made before the retention's
    horizon."""
    horizon = utcnow() - timedelta(hours=settings.runs.async_retention_hours)
    return webhooks.purge_deliveries(session, created_before=horizon)
