"""The run controller of every tier (`/v1`, the console's debugger, and the web tier): start a
run and answer it streaming (SSE) or blocking (JSON), resume its stream, stop it.

Each tier reads its own caller (an app key and a `user`, a console account, an end user's
token) and its own body rules, then calls these; the run itself, its events and its stop go
through the services layer's verbs (`services/runs`), never through the backends.

`plain_endpoint` marks a route whose controller also runs on a plain `Request`: the
run-starting routes are dispatched by `api/hot_routes.py` straight from the one router's
table, without FastAPI's routing and dependency solving (see there).

Every run-starting route accepts an `Idempotency-Key` header (read here, so in every tier and
on the hot path alike): a repeat of the request attaches to the run the first one started
(`services/runs/idempotency.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from starlette.responses import Response

from conduit.api.errors import REDIS_OUTAGE, envelope, error_response
from conduit.api.responses import OrjsonResponse
from conduit.api.sse import EventStreamResponse, event_stream, simple_frames, simple_metadata
from conduit.core.apps.chat import BlockingReply
from conduit.core.apps.workflow import BlockingWorkflowReply
from conduit.core.runs.spec import RunSpec
from conduit.db.models import App
from conduit.errors import InvalidParam, RedisUnavailable, RunEventsLost
from conduit.infra.ssrf import check_callback_url_async
from conduit.services import human_input
from conduit.services import runs as run_service
from conduit.services.end_users import SERVICE_API
from conduit.services.runs import ChatRequest, RunEvents, Runs, StartedRun, WorkflowRequest
from conduit.services.runs.workflow import workflow_run_events

PlainEndpoint = Callable[[Request], Awaitable[Response]]
PLAIN_ATTRIBUTE = "__conduit_plain_endpoint__"
TASK_HEADER = "X-Task-Id"
NAME_HEADERS = {"message_id": "X-Message-Id", "conversation_id": "X-Conversation-Id"}
# A chat-family run's names (a workflow run is named by `X-Workflow-Run-Id` instead).
RUN_HEADERS = (TASK_HEADER, *NAME_HEADERS.values())
WORKFLOW_RUN_HEADER = "X-Workflow-Run-Id"
IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX_LENGTH = 255
INVALID_IDEMPOTENCY_KEY = (
    f"{IDEMPOTENCY_HEADER}: must be 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII characters"
)


def runs_of(request: Request) -> Runs:
    runs: Runs = request.app.state.runs
    return runs


def plain_endpoint(plain: PlainEndpoint) -> Callable[[Any], Any]:
    """Mark a route's endpoint as also served by `plain` on a bare Request (hot routes)."""

    def mark(endpoint: Any) -> Any:
        setattr(endpoint, PLAIN_ATTRIBUTE, plain)
        return endpoint

    return mark


async def start_chat(
    request: Request,
    *,
    app: App,
    key_id: str | None,
    user: str,
    run: ChatRequest,
    status_url: Callable[[str], str],
    user_type: str = SERVICE_API,
    simple: bool = False,
) -> Response:
    """Start a chat or completion run of `app` for `user` (an end user of `user_type`) and
    answer it in `run`'s mode (an async run: 202 and where to poll it, `status_url(task_id)`);
    with an Idempotency-Key, a repeat answers from the run the first request started.
    `simple`: through Dify's simple converter (the web tier)."""
    runs = runs_of(request)
    key = idempotency_key(request)
    if run.callback_url is not None:
        # Refused before anything is stored: private, loopback, link-local and metadata
        # targets (unless allowed), checked again at each delivery (`infra/ssrf.py`).
        run.callback_url = await check_callback_url_async(run.callback_url, runs.settings.webhook)
    attached = False
    if key is None:
        spec = await run_service.start_chat_run(
            runs, app=app, key_id=key_id, user=user, request=run, user_type=user_type
        )
        task_id = spec.task_id
        events = run_service.run_events(runs, task_id)
        names = run_names(app, spec)
    else:
        started = await run_service.start_or_attach_chat_run(
            runs, app=app, key_id=key_id, user=user, request=run, key=key, user_type=user_type
        )
        task_id, events, attached = started.task_id, started.events, started.attached
        names = name_headers(task_id, started.names)
    if run.response_mode == "async":
        started_run = StartedRun(task_id, {}, events, attached)
        return await _accepted(runs, app, user, user_type, started_run, status_url, names)
    if run.response_mode == "streaming":
        return stream(runs, events, names=names, simple=simple)
    response = await blocking_response(events, mode=app.mode.value, simple=simple)
    response.headers.update(names)
    return response


async def start_workflow(
    request: Request,
    *,
    app: App,
    key_id: str | None,
    user: str,
    run: WorkflowRequest,
    status_url: Callable[[str], str],
    user_type: str = SERVICE_API,
    simple: bool = False,
) -> Response:
    """Start a workflow run of `app` for `user` and answer it blocking (Dify's
    `{task_id, workflow_run_id, data}`) or streaming; with an Idempotency-Key, a repeat
    answers from the run the first request started."""
    runs = runs_of(request)
    key = idempotency_key(request)
    if run.callback_url is not None:
        run.callback_url = await check_callback_url_async(run.callback_url, runs.settings.webhook)
    started = await run_service.start_or_attach_workflow_run(
        runs, app=app, key_id=key_id, user=user, request=run, key=key, user_type=user_type
    )
    names = {TASK_HEADER: started.task_id, WORKFLOW_RUN_HEADER: started.names["workflow_run_id"]}
    if run.response_mode == "async":
        return await _accepted(runs, app, user, user_type, started, status_url, names)
    if run.response_mode == "streaming":
        return stream(runs, started.events, names=names, simple=simple)
    try:
        reply = BlockingWorkflowReply()
        async for event in started.events.follow():
            body = reply.add(event.event, event.payload)
            if body is not None:
                return OrjsonResponse(body, headers=names)
    except REDIS_OUTAGE:
        return error_response(RedisUnavailable())
    return error_response(RunEventsLost())


async def resume_workflow(
    request: Request,
    *,
    app: App,
    user: str,
    workflow_run_id: str,
    after: int,
    user_type: str = SERVICE_API,
    simple: bool = False,
) -> Response:
    """A workflow run's events after `after`, then live (its own user only: 404 otherwise)."""
    runs = runs_of(request)
    events = await workflow_run_events(
        runs, app=app, user=user, run_id=workflow_run_id, user_type=user_type
    )
    names = {TASK_HEADER: events.task_id, WORKFLOW_RUN_HEADER: workflow_run_id}
    return stream(runs, events, after=after, names=names, simple=simple)


async def _accepted(
    runs: Runs,
    app: App,
    user: str,
    user_type: str,
    started: StartedRun,
    status_url: Callable[[str], str],
    names: dict[str, str],
) -> Response:
    """An async run's 202: its task and where to poll it (a repeat: the task as it is now)."""
    status = "pending"
    task_id = started.async_task_id or started.task_id
    if started.attached:
        status = await run_service.task_status_of(
            runs, app=app, user=user, task_id=task_id, user_type=user_type
        )
    return OrjsonResponse(
        {"task_id": task_id, "status": status, "status_url": status_url(task_id)},
        status_code=202,
        headers=names,
    )


def idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key (None without one): 1 to 255 printable ASCII characters
    (space to `~`), given once; a 400 naming the header otherwise."""
    given = request.headers.getlist(IDEMPOTENCY_HEADER)
    if not given:
        return None
    if len(given) > 1:
        raise InvalidParam(f"{IDEMPOTENCY_HEADER}: must be given once")
    key = given[0]
    if not 0 < len(key) <= IDEMPOTENCY_KEY_MAX_LENGTH or not all(" " <= c <= "~" for c in key):
        raise InvalidParam(INVALID_IDEMPOTENCY_KEY)
    return key


def run_names(app: App, spec: RunSpec) -> dict[str, str]:
    """Response headers naming the run before its first event, so that a client cut before
    it can still resume it (`X-Task-Id`) or find its message and conversation. A completion's
    conversation stays off the wire, as in its events."""
    return name_headers(spec.task_id, run_service.chat_run_names(app, spec))


def name_headers(task_id: str, names: dict[str, str]) -> dict[str, str]:
    """A run's task id and names (`message_id`, `conversation_id`) as response headers."""
    headers = {TASK_HEADER: task_id}
    for name, value in names.items():
        headers[NAME_HEADERS[name]] = value
    return headers


def stream(
    runs: Runs,
    events: RunEvents,
    *,
    after: int = 0,
    names: dict[str, str] | None = None,
    simple: bool = False,
) -> Response:
    frames = event_stream(events, after=after, ping_interval=runs.settings.runs.ping_interval)
    return EventStreamResponse(simple_frames(frames) if simple else frames, names)


async def blocking_response(events: RunEvents, *, mode: str, simple: bool = False) -> Response:
    """Read the run to its end; Dify's blocking JSON, or its error as an HTTP error (503 when
    its log cannot be read to the end: the run goes on and is stored all the same)."""
    try:
        return await _read_to_end(events, mode=mode, simple=simple)
    except REDIS_OUTAGE:
        return error_response(RedisUnavailable())


async def _read_to_end(events: RunEvents, *, mode: str, simple: bool) -> Response:
    reply = BlockingReply(mode)
    async for event in events.follow():
        end = reply.add(event.event, event.payload)
        if end is not None:
            if end.error is not None:
                return envelope(end.error["code"], end.error["message"], end.error["status"])
            body = end.body
            if simple and body is not None and isinstance(body.get("metadata"), dict):
                body = {**body, "metadata": simple_metadata(body["metadata"])}
            return OrjsonResponse(body)
    # The log vanished before the run's end (lost with Redis, or forgotten).
    return error_response(RunEventsLost())


async def resume(
    request: Request,
    *,
    app: App,
    user: str,
    task_id: str,
    after: int,
    user_type: str = SERVICE_API,
    simple: bool = False,
) -> Response:
    """Replay the run's events after `after` exactly once, then follow it live (the run's
    own user only: 404 otherwise)."""
    runs = runs_of(request)
    events = await run_service.resumable_run_events(
        runs, app=app, user=user, task_id=task_id, user_type=user_type
    )
    return stream(runs, events, after=after, names={TASK_HEADER: task_id}, simple=simple)


async def stop(
    request: Request, *, app: App, user: str, task_id: str, user_type: str = SERVICE_API
) -> dict[str, Any]:
    """Stop `user`'s own run (`stopped` says whether one was stopped)."""
    runs = runs_of(request)
    # A workflow run paused on a form (no executor to ask) ends here; one resumed since
    # under another task id is asked to stop there.
    stopped = await human_input.stop_paused_run(
        runs, app=app, user=user, user_type=user_type, task_id=task_id
    )
    if not stopped:
        stopped = await run_service.stop_run(
            runs, app=app, user=user, task_id=task_id, user_type=user_type
        )
    return {"result": "success", "stopped": stopped}
