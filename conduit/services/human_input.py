"""Human-input forms of paused workflow runs: reading one by its token, answering it (which
resumes the run), the sweep of forms whose time ran out, and stopping a paused run.

A run pauses at a human-input node (`core/workflow/human_input.py`): its row is `paused` with
the spec that resumes it and each waiting node's form is stored (`workflow_store._pause`).
An answer is one transaction: the form `submitted` (a guarded UPDATE: of two answers at once,
one wins, the other is a 412), and, when the run is paused, the run `running` again under a
new task id whose run is an outbox row on the `generation` queue — so an accepted answer is
never lost, whether the broker, the worker or this server dies next. Its event log is created
before that commit (a worker may start it at once). A form answered while its run was not
paused (still running its other branches, or resumed for another form) is `pending_resume`:
the run's next pause is followed by a resume from the sweep (`resume_due`), which also times
out forms (`timeout`: the node's `__timeout` branch) and ends runs that waited longer than
the server allows (`expired`: the run `stopped`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, select, update
from sqlalchemy.orm import Session

from conduit.core.apps.workflow import KIND, WorkflowRunBody
from conduit.core.runs.backends import RunBackends
from conduit.core.runs.spec import RunSpec
from conduit.core.runs.status import RunStatus
from conduit.core.workflow.human_input import Answer, FormDataError, PendingForm
from conduit.db.models import (
    App,
    AppMode,
    EndUser,
    HumanInputForm,
    WorkflowNodeExecution,
    WorkflowRun,
    utcnow,
)
from conduit.errors import BadRequest, ConduitError, NotFound
from conduit.infra.db import Database
from conduit.infra.outbox import enqueue
from conduit.infra.settings import Settings
from conduit.services import sites
from conduit.services.end_users import SERVICE_API
from conduit.services.runs import task_store, tasks
from conduit.services.runs.context import Runs
from conduit.services.runs.start import RUN_TASK
from conduit.services.runs.stop import end_user_id_of
from conduit.services.runs.workflow_store import close_forms

logger = logging.getLogger(__name__)

_RUNS = cast(Table, WorkflowRun.__table__)
_FORMS = cast(Table, HumanInputForm.__table__)
_NODES = cast(Table, WorkflowNodeExecution.__table__)
PAUSED = "paused"
WAITING, SUBMITTED, TIMEOUT, EXPIRED = "waiting", "submitted", "timeout", "expired"
SWEEP_BATCH = 100


class FormNotFound(NotFound):
    code = "not_found"
    default_message = "Form not found"


class FormSubmitted(ConduitError):
    code = "human_input_form_submitted"
    status = 412
    default_message = "This form has already been submitted."


class FormExpired(ConduitError):
    code = "human_input_form_expired"
    status = 412
    default_message = "This form has expired."


class InvalidFormData(BadRequest):
    code = "invalid_form_data"
    default_message = "The form's data is not valid."


# --- reading a form ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FormScope:
    """Whose forms a caller may reach: an app's (its key), a workspace's (a console member),
    or any app's whose site is on (the web tier: the token is the secret, as in Dify)."""

    app_id: str | None = None
    tenant_id: str | None = None
    site: bool = False

    @classmethod
    def of_app(cls, app: App) -> FormScope:
        return cls(app_id=app.id)


def find_form(session: Session, *, scope: FormScope, token: str) -> HumanInputForm:
    """The form `token` names, within `scope` (404 otherwise: another app's form does not
    exist for this caller)."""
    form = session.scalars(select(HumanInputForm).where(HumanInputForm.token == token)).first()
    if form is None:
        raise FormNotFound()
    if scope.app_id is not None and form.app_id != scope.app_id:
        raise FormNotFound()
    if scope.tenant_id is not None and form.tenant_id != scope.tenant_id:
        raise FormNotFound()
    if scope.site:
        app = session.get(App, form.app_id)
        if app is None or not app.enable_site:
            raise FormNotFound()
    return form


def _open(form: HumanInputForm) -> PendingForm:
    """The form's definition, if it can still be answered (412 otherwise)."""
    if form.status == SUBMITTED:
        raise FormSubmitted(f"This form has already been submitted, form_id={form.id}")
    expired = form.expiration_time <= utcnow()
    if form.status in (TIMEOUT, EXPIRED) or expired:
        raise FormExpired(f"This form has expired, form_id={form.id}")
    return PendingForm.from_json(form.definition)


def form_view(session: Session, *, scope: FormScope, token: str) -> dict[str, Any]:
    """`GET …/form/human_input/{token}`: what the form shows, while it can be answered."""
    return _open(find_form(session, scope=scope, token=token)).view()


def web_form_view(db: Database, token: str) -> dict[str, Any]:
    """The web tier's form: its view and its app's site (title, colours) for the page."""
    with db.sessions() as session:
        form = find_form(session, scope=FormScope(site=True), token=token)
        view = _open(form).view()
        app = session.get(App, form.app_id)
        site = sites.site_of(session, app) if app is not None else None
        return {**view, "site": sites.service_view(site) if site is not None else None}


# --- answering it -----------------------------------------------------------------------------


async def submit_form(
    runs: Runs,
    *,
    scope: FormScope,
    token: str,
    inputs: Any,
    action: Any,
    answered_by: str,
) -> None:
    """Answer the form (`POST …/form/human_input/{token}`) and resume its run. 412 when it was
    answered already or its time ran out; 400 `invalid_form_data` naming what does not fit."""
    run_id, answer, meta, owner = await asyncio.to_thread(
        _checked, runs.db, scope, token, inputs, action
    )
    # The resumed execution's log and its stop owner exist before the commit that may hand it
    # to a worker (a stop right after the answer finds it; a refused answer leaves both to
    # expire).
    task_id = str(uuid.uuid4())
    await runs.backends.eventlog.create(task_id, meta=meta, written_here=False)
    await _register_stop(runs.backends, runs.settings, task_id, owner)
    await asyncio.to_thread(_answer, runs.db, scope, token, answer, answered_by, run_id, task_id)


def _checked(
    db: Database, scope: FormScope, token: str, inputs: Any, action: Any
) -> tuple[str, Answer, dict[str, str], str]:
    with db.sessions() as session:
        form = find_form(session, scope=scope, token=token)
        pending = _open(form)
        try:
            action_id, values = pending.checked(inputs, action)
        except FormDataError as error:
            raise InvalidFormData(str(error)) from None
        run = session.get(WorkflowRun, form.workflow_run_id)
        if run is None:
            raise FormNotFound()
        answer = Answer(action_id=action_id, values=values)
        return run.id, answer, _log_meta(session, run), _owner(run)


def _answer(
    db: Database,
    scope: FormScope,
    token: str,
    answer: Answer,
    answered_by: str,
    run_id: str,
    task_id: str,
) -> RunSpec | None:
    now = utcnow()
    with db.transaction() as session:
        # The run first, then its form (the order of every writer of both: the pause, a
        # stop, the longest wait's end), so that an answer and a stop never deadlock.
        status = session.execute(
            select(_RUNS.c.status).where(_RUNS.c.id == run_id).with_for_update()
        ).scalar()
        if status not in (PAUSED, RunStatus.RUNNING.value):
            form = find_form(session, scope=scope, token=token)
            raise FormExpired(f"This form has expired, form_id={form.id}")
        written = session.execute(
            update(_FORMS)
            .where(
                _FORMS.c.token == token,
                _FORMS.c.status == WAITING,
                _FORMS.c.expiration_time > now,
            )
            .values(
                status=SUBMITTED,
                answer=answer.to_json(),
                answered_at=now,
                answered_by=answered_by[:255],
                pending_resume=True,
            )
        )
        if not getattr(written, "rowcount", 0):
            # Another answer (or the sweep) came first: as Dify, a 412 saying which.
            form = find_form(session, scope=scope, token=token)
            _open(form)
            raise FormExpired(f"This form has expired, form_id={form.id}")
        return resume(session, run_id, task_id)


def resume(session: Session, run_id: str, task_id: str) -> RunSpec | None:
    """Resume the run if it is paused (in the caller's transaction): `running` again under
    `task_id` (whose log exists), its spec handed to the `generation` queue through the
    outbox, its forms' answers taken up. None when it is not paused (running still: its next
    pause is followed by the sweep's resume; or it ended)."""
    row = session.execute(
        select(
            _RUNS.c.status,
            _RUNS.c.resume_spec,
            _RUNS.c.total_tokens,
            _RUNS.c.exceptions_count,
            _RUNS.c.elapsed_time,
        ).where(_RUNS.c.id == run_id)
    ).first()
    if row is None or row.status != PAUSED or not row.resume_spec:
        return None
    moved = session.execute(
        update(_RUNS)
        .where(_RUNS.c.id == run_id, _RUNS.c.status == PAUSED)
        .values(
            status=RunStatus.RUNNING.value,
            task_id=task_id,
            resume_spec=None,
            renewed_at=None,
            resumed_at=utcnow(),
        )
    )
    if not getattr(moved, "rowcount", 0):
        return None
    paused = dict(row.resume_spec)
    body = WorkflowRunBody.from_json(dict(paused["body"]))
    first_task = str(paused["task_id"]) if paused.get("asynchronous") else None
    body = replace(
        body,
        resumption=body.resumption + 1,
        async_task_id=body.async_task_id or first_task,
        # What it counted so far (its row's totals, as its pause stored them) goes on.
        prior={
            "total_tokens": row.total_tokens,
            "exceptions_count": row.exceptions_count,
            "elapsed_time": row.elapsed_time,
        },
    )
    spec = RunSpec.from_json({**paused, "task_id": task_id, "kind": KIND}, body)
    # The waiting nodes' `paused` records: the resumed execution records them as they end.
    session.execute(
        delete(_NODES).where(_NODES.c.workflow_run_id == run_id, _NODES.c.status == PAUSED)
    )
    session.execute(
        update(_FORMS)
        .where(_FORMS.c.workflow_run_id == run_id, _FORMS.c.pending_resume.is_(True))
        .values(pending_resume=False)
    )
    enqueue(
        session,
        RUN_TASK,
        queue="generation",
        kwargs={"spec": spec.to_json(), "slot_key": None},
    )
    return spec


def _log_meta(session: Session, run: WorkflowRun) -> dict[str, str]:
    """The meta of a resumed execution's log: whose run it is (as its start wrote it)."""
    user = session.get(EndUser, run.end_user_id) if run.end_user_id else None
    meta = {
        "app_id": run.app_id,
        "user": user.session_id if user is not None else "",
        "mode": "workflow",
        "workflow_run_id": run.id,
        "created_at": str(int(run.created_at.timestamp())),
    }
    if user is not None and user.type != SERVICE_API:
        meta["user_type"] = user.type
    return meta


def _owner(run: WorkflowRun) -> str:
    """Who may stop the run (as its start registered it: `start.owner_of`)."""
    return f"end-user-{run.end_user_id}"


async def _register_stop(
    backends: RunBackends, settings: Settings, task_id: str, owner: str
) -> None:
    """The resumed execution's stop owner (tolerant, as a start's: the run goes on without)."""
    try:
        ttl = float(settings.runs.async_max_seconds + 600)
        await backends.stops.register(task_id, owner, ttl=ttl)
    except Exception:
        logger.warning("run %s: registering its stop owner failed", task_id, exc_info=True)


# --- what a resumed node reads ----------------------------------------------------------------


class FormAnswers:
    """A run's form for a node and its answer (`WorkflowServices.form_of`), from the database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def __call__(self, run_id: str, node_id: str) -> tuple[PendingForm, Answer | None] | None:
        return await asyncio.to_thread(self._read, run_id, node_id)

    def _read(self, run_id: str, node_id: str) -> tuple[PendingForm, Answer | None] | None:
        with self._db.reads() as session:
            row = session.execute(
                select(_FORMS.c.definition, _FORMS.c.status, _FORMS.c.answer).where(
                    _FORMS.c.workflow_run_id == run_id, _FORMS.c.node_id == node_id
                )
            ).first()
        if row is None:
            return None
        form = PendingForm.from_json(row.definition)
        if row.status in (SUBMITTED, TIMEOUT) and row.answer:
            given = dict(row.answer)
            return form, Answer(
                action_id=str(given.get("action_id") or ""),
                values={str(k): str(v) for k, v in (given.get("values") or {}).items()},
                timed_out=bool(given.get("timed_out")),
            )
        return form, None


# --- the sweep: forms out of time, answers waiting for their run's pause ------------------------


async def resume_due(
    db: Database, settings: Settings, backends: RunBackends, *, now: datetime | None = None
) -> int:
    """Time out the forms whose time ran out (the node takes its `__timeout` branch), stop the
    runs that waited longer than the server allows, and resume every paused run with an
    answered form. Returns how many runs were resumed or ended."""
    moment = now or utcnow()
    longest = timedelta(hours=settings.workflow.human_input_max_wait_hours)
    ended = 0
    if await asyncio.to_thread(_any_out_of_time, db, moment, longest):
        # (looked for first, without the write lock SQLite's every transaction takes)
        ended = await asyncio.to_thread(_expire, db, moment, longest)
        await asyncio.to_thread(_time_out, db, moment)
    due = await asyncio.to_thread(_due_runs, db)
    resumed = 0
    for run_id, meta, owner in due:
        task_id = str(uuid.uuid4())
        try:
            await backends.eventlog.create(task_id, meta=meta, written_here=False)
        except Exception:
            logger.warning("run %s: its resumed log could not be created", run_id, exc_info=True)
            continue
        await _register_stop(backends, settings, task_id, owner)
        if await asyncio.to_thread(_resume_one, db, run_id, task_id) is not None:
            resumed += 1
    if resumed or ended:
        logger.info(
            "human input: %d run(s) resumed, %d ended past the longest wait", resumed, ended
        )
    return resumed + ended


def _any_out_of_time(db: Database, now: datetime, longest: timedelta) -> bool:
    """Whether a waiting form ran out of its time, or a paused run waited past the longest."""
    with db.reads() as session:
        found = session.execute(
            select(_FORMS.c.id)
            .join(_RUNS, _RUNS.c.id == _FORMS.c.workflow_run_id)
            .where(
                _FORMS.c.status == WAITING,
                (_FORMS.c.expiration_time <= now)
                | ((_FORMS.c.created_at <= now - longest) & (_RUNS.c.status == PAUSED)),
            )
            .limit(1)
        ).first()
        return found is not None


def _time_out(db: Database, now: datetime) -> None:
    answer = Answer(action_id="", values={}, timed_out=True).to_json()
    with db.transaction() as session:
        session.execute(
            update(_FORMS)
            .where(_FORMS.c.status == WAITING, _FORMS.c.expiration_time <= now)
            .values(status=TIMEOUT, answer=answer, answered_at=now, pending_resume=True)
        )


def _expire(db: Database, now: datetime, longest: timedelta) -> int:
    """End the runs whose form waited longer than the server allows: `stopped`, as Dify."""
    with db.transaction() as session:
        rows = session.execute(
            select(_FORMS.c.workflow_run_id, _FORMS.c.node_id)
            .join(_RUNS, _RUNS.c.id == _FORMS.c.workflow_run_id)
            .where(
                _FORMS.c.status == WAITING,
                _FORMS.c.created_at <= now - longest,
                _RUNS.c.status == PAUSED,
            )
            .limit(SWEEP_BATCH)
        ).all()
        ended = 0
        for run_id, node_id in rows:
            if stop_paused(session, run_id, f"Human input global timeout at node {node_id}"):
                ended += 1
        return ended


def _due_runs(db: Database) -> list[tuple[str, dict[str, str], str]]:
    with db.reads() as session:
        runs = session.scalars(
            select(WorkflowRun)
            .where(
                WorkflowRun.status == PAUSED,
                WorkflowRun.id.in_(
                    select(_FORMS.c.workflow_run_id).where(_FORMS.c.pending_resume.is_(True))
                ),
            )
            .limit(SWEEP_BATCH)
        ).all()
        return [(run.id, _log_meta(session, run), _owner(run)) for run in runs]


def _resume_one(db: Database, run_id: str, task_id: str) -> RunSpec | None:
    with db.transaction() as session:
        return resume(session, run_id, task_id)


# --- stopping a paused run ----------------------------------------------------------------------


def stop_paused(session: Session, run_id: str, reason: str = "The run was stopped.") -> bool:
    """End a paused run `stopped` (in the caller's transaction): its waiting forms `expired`,
    an async run's task ended (its callback says so). False when it is not paused."""
    now = utcnow()
    moved = session.execute(
        update(_RUNS)
        .where(_RUNS.c.id == run_id, _RUNS.c.status == PAUSED)
        .values(
            status=RunStatus.STOPPED.value,
            error=reason,
            finished_at=now,
            resume_spec=None,
            # Its end is an execution of its own, with no log: its events are its stored end
            # (the paused execution's log ends with `workflow_paused`, no longer true).
            task_id=str(uuid.uuid4()),
        )
    )
    if not getattr(moved, "rowcount", 0):
        return False
    close_forms(session.connection(), run_id)
    session.execute(
        update(_NODES)
        .where(_NODES.c.workflow_run_id == run_id, _NODES.c.status == PAUSED)
        .values(status=RunStatus.STOPPED.value, error=reason, finished_at=now)
    )
    task_id = task_store.workflow_task_id(session.connection(), run_id)
    if task_id is not None:
        tasks.end_run_task(session, task_id, RunStatus.STOPPED.value)
    return True


def paused_run_of_task(
    db: Database, *, app_id: str, end_user_id: str, task_id: str
) -> tuple[str, str | None] | None:
    """The run a stop names by a task id it had (the execution that paused, or the current
    one): its id, and its current task id when it runs again (None while paused)."""
    with db.sessions() as session:
        run = session.scalars(
            select(WorkflowRun).where(
                WorkflowRun.app_id == app_id,
                WorkflowRun.end_user_id == end_user_id,
                WorkflowRun.task_id == task_id,
            )
        ).first()
        if run is None:
            run_id = session.scalars(
                select(_FORMS.c.workflow_run_id).where(
                    _FORMS.c.task_id == task_id, _FORMS.c.app_id == app_id
                )
            ).first()
            run = session.get(WorkflowRun, run_id) if run_id else None
            if run is None or run.end_user_id != end_user_id:
                return None
        if run.status == PAUSED:
            return run.id, None
        if run.status == RunStatus.RUNNING.value and run.task_id and run.task_id != task_id:
            return run.id, run.task_id
        return None


async def stop_paused_run(runs: Runs, *, app: App, user: str, user_type: str, task_id: str) -> bool:
    """A stop of a workflow run by a task id whose execution is over: a paused run ends
    `stopped`; a run resumed since under another task id is asked to stop there."""
    if app.mode not in (AppMode.WORKFLOW, AppMode.ADVANCED_CHAT):
        return False
    end_user_id = await asyncio.to_thread(end_user_id_of, runs.db, app.id, user, user_type)
    if end_user_id is None:
        return False
    found = await asyncio.to_thread(
        paused_run_of_task, runs.db, app_id=app.id, end_user_id=end_user_id, task_id=task_id
    )
    if found is None:
        return False
    run_id, current = found
    if current is not None:
        return await runs.backends.stops.request_stop(current, f"end-user-{end_user_id}")

    def stop() -> bool:
        with runs.db.transaction() as session:
            return stop_paused(session, run_id)

    if await asyncio.to_thread(stop):
        return True
    # An answer resumed it meanwhile: the stop goes to its new execution.
    again = await asyncio.to_thread(
        paused_run_of_task, runs.db, app_id=app.id, end_user_id=end_user_id, task_id=task_id
    )
    if again is None or again[1] is None:
        return False
    return await runs.backends.stops.request_stop(again[1], f"end-user-{end_user_id}")
