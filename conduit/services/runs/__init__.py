"""Runs, for every kind of app: start (limits, the event log, one commit, the hand-off), stop,
reading a run's events, storing results, and ending runs whose executor is gone.

- `start.py`: `start_run(runs, planner, ...)`, generic; a planner per app kind decides a run's
  rows and spec.
- `chat.py`: the planner of chat and completion runs.
- `idempotency.py`: a request with an `Idempotency-Key` starts its run once; a repeat
  attaches to it.
- `store.py`: the only home of run SQL (the finish, the lease and checkpoint, the takeover).
- `stop.py`: `stop_run`, and the readers of a run's events.
- `reaper.py`: taking over runs whose executor is gone.
- `tasks.py`, `task_store.py`: async runs' tasks (status, result, end, retention).
- `context.py`: `Runs`, the process's run machinery (built by `conduit/bootstrap.py`).
"""

import asyncio
from typing import Any

from conduit.core.runs.spec import RunSpec
from conduit.db.models import App, AppMode
from conduit.services.end_users import SERVICE_API
from conduit.services.runs import tasks
from conduit.services.runs.chat import ChatPlanner, ChatRequest, model_ref
from conduit.services.runs.chatflow import ChatflowPlanner
from conduit.services.runs.context import Runs, run_limits
from conduit.services.runs.idempotency import StartedRun, start_or_attach
from conduit.services.runs.reaper import end_interrupted_runs, take_over_dead_runs
from conduit.services.runs.start import RUN_TASK, start_run
from conduit.services.runs.stop import RunEvents, resumable_run_events, run_events, stop_run
from conduit.services.runs.store import MessageStore
from conduit.services.runs.workflow import WorkflowPlanner, WorkflowRequest

CHAT_PLANNER = ChatPlanner()
CHATFLOW_PLANNER = ChatflowPlanner()
WORKFLOW_PLANNER = WorkflowPlanner()


def chat_planner(app: App) -> ChatPlanner | ChatflowPlanner:
    """Who plans a chat request's run: a chatflow app's workflow, or the chat planner."""
    return CHATFLOW_PLANNER if app.mode == AppMode.ADVANCED_CHAT else CHAT_PLANNER


async def start_chat_run(
    runs: Runs,
    *,
    app: App,
    key_id: str | None,
    user: str,
    request: ChatRequest,
    user_type: str = SERVICE_API,
) -> RunSpec:
    """Start a chat or completion run (`request.mode`) of `app` for `user`, an end user of
    `user_type` (a chatflow app's turn runs its workflow)."""
    return await start_run(
        runs,
        chat_planner(app),
        app=app,
        key_id=key_id,
        user=user,
        request=request,
        user_type=user_type,
    )


def chat_run_names(app: App, spec: RunSpec) -> dict[str, str]:
    """A chat-family run's names beside its task id (its message, and its conversation)."""
    return chat_planner(app).names(spec)


async def start_or_attach_chat_run(
    runs: Runs,
    *,
    app: App,
    key_id: str | None,
    user: str,
    request: ChatRequest,
    key: str,
    user_type: str = SERVICE_API,
) -> StartedRun:
    """Start a chat or completion run under Idempotency-Key `key`, or attach to the one an
    earlier request of `user` started under it (`idempotency.py`)."""
    return await start_or_attach(
        runs,
        chat_planner(app),
        app=app,
        key_id=key_id,
        user=user,
        request=request,
        key=key,
        user_type=user_type,
    )


async def start_or_attach_workflow_run(
    runs: Runs,
    *,
    app: App,
    key_id: str | None,
    user: str,
    request: WorkflowRequest,
    key: str | None,
    user_type: str = SERVICE_API,
) -> StartedRun:
    """Start a workflow run of `app` for `user` (under Idempotency-Key `key`, or attach to the
    run an earlier request of `user` started under it)."""
    if key is not None:
        return await start_or_attach(
            runs,
            WORKFLOW_PLANNER,
            app=app,
            key_id=key_id,
            user=user,
            request=request,
            key=key,
            user_type=user_type,
        )
    spec = await start_run(
        runs,
        WORKFLOW_PLANNER,
        app=app,
        key_id=key_id,
        user=user,
        request=request,
        user_type=user_type,
    )
    return StartedRun(
        task_id=spec.task_id,
        names=WORKFLOW_PLANNER.names(spec),
        events=run_events(runs, spec.task_id),
        attached=False,
    )


async def task_view(
    runs: Runs, *, app: App, user: str, task_id: str, user_type: str = SERVICE_API
) -> dict[str, Any]:
    """`user`'s async task of `app` as `GET /v1/tasks/{task_id}` shows it (404 otherwise)."""
    return await asyncio.to_thread(_task_view, runs, app, user, user_type, task_id)


async def task_status_of(
    runs: Runs, *, app: App, user: str, task_id: str, user_type: str = SERVICE_API
) -> str:
    """`user`'s async task's status (404 when it is not theirs)."""
    view = await task_view(runs, app=app, user=user, task_id=task_id, user_type=user_type)
    return str(view["status"])


def _task_view(runs: Runs, app: App, user: str, user_type: str, task_id: str) -> dict[str, Any]:
    with runs.db.sessions() as session:
        task = tasks.find_task(
            session,
            app=app,
            user=user,
            task_id=task_id,
            settings=runs.settings,
            user_type=user_type,
        )
        return tasks.describe(session, task, app)


__all__ = [
    "RUN_TASK",
    "ChatRequest",
    "MessageStore",
    "RunEvents",
    "RunSpec",
    "Runs",
    "StartedRun",
    "WorkflowRequest",
    "chat_run_names",
    "end_interrupted_runs",
    "model_ref",
    "resumable_run_events",
    "run_events",
    "run_limits",
    "start_chat_run",
    "start_or_attach_chat_run",
    "start_run",
    "stop_run",
    "take_over_dead_runs",
    "task_status_of",
    "task_view",
]
