"""Runs of chat and completion apps: start (validate, write, commit, hand off), stop, resume,
finish (persist), and the reaper of runs whose process died.

The use case commits once before the hand-off, so the executor (another process, maybe) sees
the rows; the runner — not the HTTP consumer — persists the result through `DatabaseRunStore`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Connection, Select, Table, Update, bindparam, insert, or_, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from conduit.core.llm.provider import ChatMessage, Usage
from conduit.core.llm.registry import ModelDefaults, ModelRegistry
from conduit.core.llm.usage import ModelPrices, usage_payload
from conduit.core.runs.backends import RunBackends
from conduit.core.runs.eventlog.base import EventLog
from conduit.core.runs.executors.inline import InlineExecutor
from conduit.core.runs.limits import Limiter
from conduit.core.runs.runner import EarlyStart, RunResult, RunSpec
from conduit.core.runs.status import RunStatus, sources_of, transition
from conduit.core.runs.stop import StopRegistry
from conduit.db.models import App, AppMode, Conversation, EndUser, Message, utcnow
from conduit.errors import (
    AppUnavailable,
    ConversationCompleted,
    InvalidParam,
    NotChatApp,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
)
from conduit.infra.cache import Cache
from conduit.infra.db import Database, commit_together
from conduit.infra.outbox import enqueue
from conduit.infra.settings import Settings
from conduit.services import conversations, model_providers, prompts
from conduit.services.end_users import cached_end_user, get_or_create_end_user
from conduit.signals import message_was_created, send_isolated

logger = logging.getLogger(__name__)

CHAT_MODES = (AppMode.CHAT, AppMode.AGENT_CHAT)
NAME_TASK = "conduit.generation.name_conversation"
RUN_TASK = "conduit.generation.run"


@dataclass
class RunRequest:
    """A generation request as the Service API received it (already type-checked)."""

    mode: str  # "chat" | "completion": the route it came in on
    inputs: Any
    query: str
    response_mode: str  # "blocking" | "streaming"
    conversation_id: str | None = None
    auto_generate_name: bool = True
    files: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class RunIds:
    """Ids of a run's rows, decided before its transaction so that its event log can exist
    first (nothing may wait on the event loop while a database write lock is held)."""

    message_id: str
    new_conversation_id: str
    created_at: datetime

    @classmethod
    def new(cls) -> RunIds:
        # Full precision in the row (it orders messages); the wire shows its whole seconds.
        return cls(str(uuid.uuid4()), str(uuid.uuid4()), utcnow())


def owner_of(end_user: EndUser) -> str:
    return f"end-user-{end_user.id}"


def app_provider(app: App) -> Any:
    """The app's `model.provider` as configured (None when unset)."""
    model = (app.model_config_ or {}).get("model")
    return model.get("provider") if isinstance(model, dict) else None


def model_ref(
    app: App, settings: Settings, *, session: Session | None = None, cache: Cache | None = None
) -> dict[str, Any]:
    """Which provider serves this app: its own `model.provider` (a workspace provider is
    referred to by id: the executor reads and decrypts its key), else the workspace's default
    provider (looked up when a `session` is given; `cache` remembers a workspace without one),
    else the server default."""
    provider = app_provider(app)
    workspace = model_providers.app_model_ref(session, app, provider, cache)
    if workspace is not None:
        return workspace
    if provider in (None, "", "default"):
        provider = "openai_api_compatible" if settings.model.base_url else "local"
    return {"provider": provider}


_MESSAGES = cast(Table, Message.__table__)
_INSERT_MESSAGE = insert(_MESSAGES)


@dataclass(frozen=True)
class PlannedRun:
    """What a run's start writes, decided by `plan_run`'s reads and checks: the spec, and
    the message's inputs and conversation (`new_conversation`: it is created with it)."""

    spec: RunSpec
    ids: RunIds
    inputs: dict[str, Any]
    end_user: EndUser
    new_conversation: bool
    name_conversation: bool


def plan_run(
    session: Session,
    *,
    app: App,
    end_user: EndUser,
    request: RunRequest,
    settings: Settings,
    task_id: str,
    ids: RunIds | None = None,
    cache: Cache | None = None,
) -> PlannedRun:
    """Validate, read what the run needs (its conversation and history, its provider and that
    provider's quota) and decide its rows; nothing is written (`write_run` does). `ids`
    (message id, new conversation id, creation time) may be decided beforehand; `cache`
    spares the default provider's query for a workspace known to have none."""
    ids = ids or RunIds.new()
    config = app.model_config_ or {}
    check_app_mode(app, request)
    ref = model_ref(app, settings, session=session, cache=cache)
    model_providers.check_quota(session, ref)
    conversation_id: str | None = None
    new_conversation = False
    if request.mode == "chat":
        history: list[tuple[str, str]] = []
        if request.conversation_id:
            conversation = conversations.get_conversation(
                session, app, end_user, request.conversation_id
            )
            if conversation.status != "normal":
                raise ConversationCompleted()
            inputs = dict(conversation.inputs or {})  # Dify keeps the conversation's own inputs
            history = _history(
                session, conversation, prompts.memory_turns(config, settings.runs.memory_turns)
            )
            conversation_id = conversation.id
        else:
            inputs = prompts.validate_inputs(config, request.inputs)
            conversation_id = ids.new_conversation_id
            new_conversation = True
        messages = prompts.chat_prompt(config, inputs, history, request.query)
    else:
        inputs = prompts.validate_inputs(config, request.inputs)
        messages = prompts.completion_prompt(config, inputs, request.query)
    spec = _spec(
        app,
        request,
        settings,
        task_id=task_id,
        ids=ids,
        conversation_id=conversation_id,
        owner=owner_of(end_user),
        messages=messages,
        ref=ref,
    )
    return PlannedRun(
        spec=spec,
        ids=ids,
        inputs=inputs,
        end_user=end_user,
        new_conversation=new_conversation,
        name_conversation=new_conversation and request.auto_generate_name,
    )


def write_run(session: Session, app: App, planned: PlannedRun, *, query: str) -> None:
    """Write a planned run: its new conversation (and the naming task) or its conversation's
    activity, and its message (`running`). Writes only, whose results are not read: they can
    go to the database together with the commit (`commit_together`); the caller commits."""
    spec, ids = planned.spec, planned.ids
    if planned.new_conversation:
        assert spec.conversation_id is not None
        conversations.create_conversation(
            session,
            app,
            planned.end_user,
            inputs=planned.inputs,
            conversation_id=spec.conversation_id,
        )
        if planned.name_conversation:
            enqueue(
                session,
                NAME_TASK,
                queue="generation",
                kwargs={"conversation_id": spec.conversation_id},
            )
    elif spec.conversation_id is not None:
        conversations.touch_conversation(session, spec.conversation_id)
    # A Core INSERT (no ORM object to flush): it is on the path of every run.
    session.connection().execute(
        _INSERT_MESSAGE,
        {
            "id": ids.message_id,
            "created_at": ids.created_at,
            "updated_at": ids.created_at,
            "app_id": app.id,
            "conversation_id": spec.conversation_id,
            "task_id": spec.task_id,
            "end_user_id": planned.end_user.id,
            "from_source": "api",
            "inputs": planned.inputs,
            "query": query,
            "status": RunStatus.RUNNING.value,
            "model_provider": spec.model_ref["provider"],
            "model_id": spec.params.model,
        },
    )


def check_app_mode(app: App, request: RunRequest) -> None:
    """The app must be of the route's kind (Dify's errors otherwise)."""
    if request.mode == "chat":
        if app.mode not in CHAT_MODES:
            if app.mode == AppMode.ADVANCED_CHAT:
                raise AppUnavailable(
                    "Chatflow apps need workflows, which this server does not run yet."
                )
            raise NotChatApp()
        if app.mode == AppMode.AGENT_CHAT and request.response_mode != "streaming":
            raise InvalidParam("Agent Chat App does not support blocking mode")
    elif app.mode != AppMode.COMPLETION:
        raise AppUnavailable()


def _spec(
    app: App,
    request: RunRequest,
    settings: Settings,
    *,
    task_id: str,
    ids: RunIds,
    conversation_id: str | None,
    owner: str,
    messages: list[ChatMessage],
    ref: dict[str, Any],
) -> RunSpec:
    config = app.model_config_ or {}
    return RunSpec(
        task_id=task_id,
        app_id=app.id,
        tenant_id=app.tenant_id,
        mode="completion" if request.mode == "completion" else "chat",
        message_id=ids.message_id,
        conversation_id=conversation_id,
        created_at=int(ids.created_at.timestamp()),
        owner=owner,
        messages=messages,
        params=prompts.generation_params(config, ref.get("default_model") or settings.model.name),
        model_ref=ref,
        prices=raw_prices(config),
    )


def early_spec(
    app: App,
    request: RunRequest,
    settings: Settings,
    *,
    task_id: str,
    ids: RunIds,
    without_default_provider: bool,
) -> RunSpec | None:
    """The run's spec before its transaction, when nothing in it comes from the database: a new
    chat or a completion, on a server provider (one the app names, or the server default for a
    workspace known to have no default provider of its own). The same functions as in
    `plan_run` build it from the same request and app, and the ids are decided beforehand,
    so it is the spec the transaction writes, but for `owner` (the end user's id, left empty:
    the runner does not use it). None when the run needs the database first (a conversation's
    history, a workspace provider's quota)."""
    if request.mode == "chat" and request.conversation_id:
        return None
    provider = app_provider(app)
    if provider in model_providers.DEFAULT_PROVIDERS:
        if not without_default_provider:
            return None
    elif provider not in model_providers.SERVER_PROVIDERS:
        return None
    check_app_mode(app, request)
    config = app.model_config_ or {}
    inputs = prompts.validate_inputs(config, request.inputs)
    if request.mode == "chat":
        messages = prompts.chat_prompt(config, inputs, [], request.query)
    else:
        messages = prompts.completion_prompt(config, inputs, request.query)
    return _spec(
        app,
        request,
        settings,
        task_id=task_id,
        ids=ids,
        conversation_id=ids.new_conversation_id if request.mode == "chat" else None,
        owner="",
        messages=messages,
        ref=model_ref(app, settings),
    )


def _history(session: Session, conversation: Conversation, turns: int) -> list[tuple[str, str]]:
    if turns <= 0:
        return []
    rows = session.scalars(
        select(Message)
        .where(
            Message.conversation_id == conversation.id,
            Message.status.in_([RunStatus.SUCCEEDED.value, RunStatus.STOPPED.value]),
            Message.answer != "",
        )
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(turns)
    )
    return [(m.query, m.answer) for m in reversed(list(rows))]


# --- limits ---------------------------------------------------------------------------------


def app_slot_key(app_id: str) -> str:
    return f"app-active:{app_id}"


async def check_limits(
    limiter: Limiter, settings: Settings, *, app: App, key_id: str | None, task_id: str
) -> str | None:
    """Count the key's request and take one of the app's run slots; raises TooManyRequests.
    Returns the slot key to release when the run ends (None when the app has no limit)."""
    per_minute = settings.runs.requests_per_minute_per_key
    if per_minute and key_id:
        wait = await limiter.hit(f"key-rate:{key_id}", limit=per_minute, window=60.0)
        if wait > 0:
            raise TooManyRequests("Too many requests. Please try again later.", retry_after=wait)
    limit = app.max_active_requests if app.max_active_requests else settings.runs.max_active_per_app
    if not limit:
        return None
    slot = app_slot_key(app.id)
    if not await limiter.acquire(
        slot, limit=limit, ttl=float(settings.runs.max_seconds), holder=task_id
    ):
        raise TooManyRequests("Too many requests. Please try again later.", retry_after=1.0)
    return slot


# --- finishing ------------------------------------------------------------------------------


def raw_prices(model_config: dict[str, Any]) -> dict[str, str] | None:
    """The app's `model.prices` ({"prompt", "completion", "currency"}) as strings, if set."""
    model = model_config.get("model")
    prices = model.get("prices") if isinstance(model, dict) else None
    if not isinstance(prices, dict):
        return None
    return {str(k): str(v) for k, v in prices.items()}


def model_prices(prices: dict[str, str] | None) -> ModelPrices | None:
    """Prices per 1K tokens from `raw_prices()`; None when unset or malformed."""
    if prices is None:
        return None
    try:
        return ModelPrices.per_1k(
            str(prices.get("prompt", "0")),
            str(prices.get("completion", "0")),
            currency=str(prices.get("currency", "USD")),
        )
    except ArithmeticError:  # decimal.InvalidOperation: a malformed price is "unpriced"
        return None


def usage_metadata(result: RunResult, prices: ModelPrices | None = None) -> dict[str, Any]:
    return {"usage": usage_payload(result.usage, result.latency, prices), "retriever_resources": []}


_RESULT_COLUMNS = (
    "status", "answer", "error", "message_tokens", "answer_tokens", "total_price", "currency",
    "provider_response_latency", "message_metadata", "finished_at", "updated_at",
)  # fmt: skip


@functools.cache
def _finish_statement(new: RunStatus) -> Update:
    """The guarded UPDATE that ends a run as `new`, built once: executed with its parameters,
    a Core statement skips the ORM's bulk-update machinery and SQL compilation per run. The
    values are `new_<column>`: a parameter named like a column would also be SET by any other
    UPDATE of the statement that has such a column (the turn count's, on PostgreSQL)."""
    guard = [_MESSAGES.c.status == source.value for source in sources_of(new)]
    return (
        update(_MESSAGES)
        .where(_MESSAGES.c.id == bindparam("message_id"), or_(*guard))
        .values({name: bindparam(f"new_{name}") for name in _RESULT_COLUMNS})
        .returning(
            _MESSAGES.c.app_id,
            _MESSAGES.c.conversation_id,
            _MESSAGES.c.end_user_id,
            _MESSAGES.c.model_provider,
            _MESSAGES.c.model_id,
        )
    )


@functools.cache
def _finish_and_count_statement(new: RunStatus) -> Select[Any]:
    """PostgreSQL: `_finish_statement` and its conversation's turn count as one statement
    (data-modifying CTEs; the count's UPDATE finds the conversation in the message's
    RETURNING row, and counts nothing when the guard refused the message's)."""
    finished = _finish_statement(new).cte("finished")
    counted = conversations.turn_counted(finished.c.conversation_id, bindparam("new_finished_at"))
    return select(finished).add_cte(counted)


def record_result(
    connection: Connection, result: RunResult, prices: ModelPrices | None
) -> tuple[dict[str, Any], Message | None]:
    """Write a finished run onto its message: one guarded UPDATE (the status may change only as
    the transition table allows) and its conversation's turn count, in the caller's transaction;
    on PostgreSQL both in one statement, which commits by itself on an autocommit connection
    (`Database.statements`). Returns the metadata and the message as written (detached), for
    `message-was-created` once the caller has committed; None when the message is gone (its
    app was deleted)."""
    metadata = usage_metadata(result, prices)
    usage = metadata["usage"]
    finished = utcnow()
    one_statement = connection.dialect.name == "postgresql"
    statement = (
        _finish_and_count_statement(result.status)
        if one_statement
        else _finish_statement(result.status)
    )
    written = connection.execute(
        statement,
        {
            "message_id": result.message_id,
            "new_status": result.status.value,
            "new_answer": result.answer,
            "new_error": result.error_message,
            "new_message_tokens": result.usage.prompt_tokens,
            "new_answer_tokens": result.usage.completion_tokens,
            "new_total_price": Decimal(str(usage["total_price"])),
            "new_currency": str(usage["currency"]),
            "new_provider_response_latency": result.latency,
            "new_message_metadata": metadata,
            "new_finished_at": finished,
            "new_updated_at": finished,
        },
    ).first()
    if written is None:
        status = connection.execute(
            select(_MESSAGES.c.status).where(_MESSAGES.c.id == result.message_id)
        ).scalar()
        if status is None:
            return metadata, None  # the app (and its messages) was deleted meanwhile
        transition(status, result.status)  # raises InvalidTransition, naming both statuses
        return metadata, None
    if written.conversation_id is not None and not one_statement:
        conversations.count_turn(connection, written.conversation_id, finished)
    # The signal's sender: the message as written, detached (handlers must not lazy-load).
    message = Message(
        id=result.message_id,
        app_id=written.app_id,
        conversation_id=written.conversation_id,
        end_user_id=written.end_user_id,
        model_provider=written.model_provider,
        model_id=written.model_id,
        status=result.status.value,
        answer=result.answer,
        message_tokens=result.usage.prompt_tokens,
        answer_tokens=result.usage.completion_tokens,
        total_price=Decimal(str(usage["total_price"])),
        currency=str(usage["currency"]),
        finished_at=finished,
    )
    return metadata, message


class DatabaseRunStore:
    """`RunStore` on the app database (the write runs on a thread, off the event loop).

    `committed`: for a run started before its start's commit (see `start_run`), resolved True
    once that committed, False if it failed; the result is stored only after a True."""

    def __init__(
        self,
        db: Database,
        prices: dict[str, str] | None = None,
        *,
        committed: asyncio.Future[bool] | None = None,
    ) -> None:
        self._db = db
        self._prices = model_prices(prices)
        self._committed = committed

    async def finish(self, result: RunResult) -> dict[str, Any]:
        if self._committed is not None and not await asyncio.shield(self._committed):
            return {}  # its start never committed: there is no message to store it on
        return await asyncio.to_thread(self._finish, result)

    def _finish(self, result: RunResult) -> dict[str, Any]:
        # Core, no ORM Session on the path of every run (its unit of work cost about 0.3 ms of
        # CPU per finish). On PostgreSQL one self-committing statement: one round trip, where
        # BEGIN, two UPDATEs and COMMIT took four, each a wait for the GIL in this thread.
        # `message-was-created` goes out after the commit.
        with self._db.statements() as connection:
            metadata, written = record_result(connection, result, self._prices)
        if written is not None:
            send_isolated(message_was_created, written, status=result.status.value)
        return metadata


def end_interrupted_runs(session: Session, *, started_before: Any | None = None) -> int:
    """End runs left `running` by a dead process as failed (partial answers are kept)."""
    query = update(Message).where(Message.status == RunStatus.RUNNING.value)
    if started_before is not None:
        query = query.where(Message.created_at < started_before)
    result = session.execute(
        query.values(
            status=RunStatus.FAILED.value,
            error="The run was interrupted: the process running it stopped.",
            finished_at=utcnow(),
        )
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    if count:
        logger.warning("ended %d run(s) left running by a stopped process", count)
    return count


def reap_stale_runs(session: Session, settings: Settings) -> int:
    """Distributed mode: a run older than the longest allowed run cannot still be alive."""
    cutoff = utcnow() - timedelta(seconds=settings.runs.max_seconds + 60)
    return end_interrupted_runs(session, started_before=cutoff)


# --- the run function executors call ---------------------------------------------------------


@dataclass
class RunEnvironment:
    """What running a spec needs in this process (`loop`: the one its backends live on)."""

    db: Database
    eventlog: EventLog
    stops: StopRegistry
    limiter: Limiter
    resolve_model: Callable[[dict[str, Any]], Any]
    loop: asyncio.AbstractEventLoop


async def run_spec(
    env: RunEnvironment,
    spec: RunSpec,
    *,
    slot_key: str | None,
    early: EarlyStart | None = None,
) -> RunResult:
    """Execute one run and always give its slot and stop registration back. `early`: the gates
    of a run started before its start has finished (see `start_run`)."""
    from conduit.core.llm.errors import ModelError
    from conduit.core.runs.runner import execute_run, fail_before_start

    committed = early.committed if early is not None else None
    created = early.created if early is not None else None
    store = _SlotReleasingStore(
        DatabaseRunStore(env.db, spec.prices, committed=committed), env.limiter, slot_key, spec
    )
    try:
        try:
            model = await env.resolve_model(spec.model_ref)
        except ModelError as error:
            return await fail_before_start(
                spec, error, log=env.eventlog, store=store, log_created=created
            )
        return await execute_run(
            spec, model=model, log=env.eventlog, stops=env.stops, store=store, log_created=created
        )
    finally:
        await store.release()
        await env.stops.forget(spec.task_id)


class _SlotReleasingStore:
    """The run's store, giving the run's slot back as soon as the result is stored: before the
    terminal event is appended, so that a client that sees the run end and starts another one
    at once finds the slot free (the log's close, a Redis round trip or two, comes after)."""

    def __init__(
        self, store: DatabaseRunStore, limiter: Limiter, slot_key: str | None, spec: RunSpec
    ) -> None:
        self._store = store
        self._limiter = limiter
        self._slot_key = slot_key
        self._task_id = spec.task_id

    async def finish(self, result: RunResult) -> dict[str, Any]:
        try:
            return await self._store.finish(result)
        finally:
            await self.release()

    async def release(self) -> None:
        slot_key, self._slot_key = self._slot_key, None  # once
        if slot_key:
            await self._limiter.release(slot_key, self._task_id)


# --- process-level run resources -----------------------------------------------------------

_process_runs: tuple[int, RunBackends | None, ModelRegistry] | None = None


def model_defaults(settings: Settings) -> ModelDefaults:
    model = settings.model
    return ModelDefaults(
        base_url=model.base_url,
        api_key=model.api_key,
        connect_timeout=model.connect_timeout,
        read_timeout=model.read_timeout,
        max_retries=model.max_retries,
        breaker_failures=model.breaker_failures,
        breaker_reset=model.breaker_reset,
        local_threads=model.local_threads,
        local_pool=model.local_pool,
    )


def bind_process_runs(backends: RunBackends | None, registry: ModelRegistry) -> None:
    """The server shares its backends (when in-process) and models with in-process tasks."""
    global _process_runs
    _process_runs = (os.getpid(), backends, registry)


def process_runs() -> tuple[RunBackends | None, ModelRegistry] | None:
    if _process_runs is None or _process_runs[0] != os.getpid():
        return None
    return _process_runs[1], _process_runs[2]


# --- starting a run (the use case) ------------------------------------------------------------


@dataclass
class RunContext:
    """This process's way of running: the environment and, for `inline`, the executor."""

    env: RunEnvironment
    settings: Settings
    inline: InlineExecutor | None
    # The process's cache: a run's start takes known end users from it (no query).
    cache: Cache | None = None


async def start_run(
    ctx: RunContext, *, app: App, key_id: str | None, user: str, request: RunRequest
) -> RunSpec:
    """Check limits and open the run's event log, write the message and conversation (one
    commit), hand the run to the executor and register its stop owner. Returns its spec."""
    if ctx.inline is not None and not ctx.inline.accepting:
        raise ServiceUnavailable("The server is shutting down; retry on another instance.")
    task_id = str(uuid.uuid4())
    ids = RunIds.new()
    # The log's creation (a Redis round trip, distributed) starts now and runs alongside the
    # limits and, for a run that can start early, the model call; it completes before the
    # commit makes the run visible to another process (a worker may start it at once). A
    # request refused meanwhile leaves only a log that expires.
    created = asyncio.ensure_future(
        ctx.env.eventlog.create(task_id, meta=_meta(app, user, request, ids))
    )
    created.add_done_callback(_retrieved)
    slot_key, without_default, known_user = await _limits(ctx, app, key_id, user, task_id)
    ttl = float(ctx.settings.runs.max_seconds + 600)
    gates: EarlyStart | None = None
    early: asyncio.Task[RunResult] | None = None
    registration: asyncio.Future[None] | None = None
    try:
        if ctx.inline is not None:
            # A run that needs nothing from the database starts its model call now, while its
            # log is created and its start commits: both hide in the model's time to first
            # token. It writes its log once that exists, and stores its result only once the
            # start has committed; if either fails, it is cancelled (the upstream request
            # closed) and the request fails as before.
            planned = early_spec(
                app,
                request,
                ctx.settings,
                task_id=task_id,
                ids=ids,
                without_default_provider=without_default,
            )
            if planned is not None:
                gates = EarlyStart.new()
                early = ctx.inline.submit(planned, slot_key, early=gates)
        await asyncio.shield(created)
        if gates is not None:
            gates.created.set_result(True)
        if known_user is not None:
            # The stop owner is known: it is registered while the start commits. (Should the
            # commit fail, the registration of a run that never existed just expires.)
            registration = asyncio.ensure_future(
                ctx.env.stops.register(task_id, owner_of(known_user), ttl=ttl)
            )
            registration.add_done_callback(_retrieved)
        spec = await asyncio.to_thread(
            _prepare_and_commit, ctx, app, user, known_user, request, task_id, ids, slot_key
        )
        if ctx.inline is None:
            await _registered(ctx, spec, ttl, registration)
    except BaseException:
        if early is not None and gates is not None:
            gates.fail()
            early.cancel()  # the run gives its slot back as it ends
        elif slot_key:
            await ctx.env.limiter.release(slot_key, task_id)
        raise
    if ctx.inline is not None:
        # The stop owner is registered while the model call starts: a client learns the task id
        # only from the stream, which this request opens after the registration.
        if gates is not None:
            gates.committed.set_result(True)
        else:
            ctx.inline.submit(spec, slot_key)
        try:
            await _registered(ctx, spec, ttl, registration)
        except Exception:
            # The run is committed and running: it goes on (and is stored) without a stop.
            logger.exception("run %s: registering its stop owner failed", task_id)
    return spec


async def _registered(
    ctx: RunContext, spec: RunSpec, ttl: float, started: asyncio.Future[None] | None
) -> None:
    """The run's stop owner registered: by `started`, or now (the owner known only now)."""
    if started is None:
        await ctx.env.stops.register(spec.task_id, spec.owner, ttl=ttl)
    else:
        await started


def _retrieved(done: asyncio.Future[None]) -> None:
    """A log's creation or a stop's registration whose request failed first: its own failure
    matters to nobody."""
    if not done.cancelled():
        done.exception()


async def _limits(
    ctx: RunContext, app: App, key_id: str | None, user: str, task_id: str
) -> tuple[str | None, bool, EndUser | None]:
    """`check_limits`, then the end user if the cache holds it and, for the inline executor,
    whether the cache knows that the app's workspace has no default provider. Returns the
    slot key, that knowledge and the end user; raises the limits' refusal.

    One after the other: without limits set, and with the cache's answers in memory (all but
    the first read of a key in a while), none of them waits, so the request goes on within
    the same turn of the event loop (running them as tasks cost two turns, each one a wait
    behind every other ready callback under load)."""
    slot_key = await check_limits(
        ctx.env.limiter, ctx.settings, app=app, key_id=key_id, task_id=task_id
    )
    try:
        without_default = await _without_default_provider(ctx, app)
        known_user = await _cached_end_user(ctx, app, user)
    except BaseException:
        if slot_key:
            await ctx.env.limiter.release(slot_key, task_id)
        raise
    return slot_key, without_default, known_user


async def _cached_end_user(ctx: RunContext, app: App, user: str) -> EndUser | None:
    return None if ctx.cache is None else await cached_end_user(ctx.cache, app, user)


async def _without_default_provider(ctx: RunContext, app: App) -> bool:
    """Whether the cache says that the app's workspace has no default provider (False when it
    does not know, or when nothing would start before the commit anyway)."""
    if ctx.inline is None or ctx.cache is None:
        return False
    if app_provider(app) not in model_providers.DEFAULT_PROVIDERS:
        return False  # the app names its provider: the workspace default does not matter
    return await model_providers.aknown_without_default(ctx.cache, app.tenant_id)


def _meta(app: App, user: str, request: RunRequest, ids: RunIds) -> dict[str, str]:
    conversation_id = ""
    if request.mode == "chat":
        conversation_id = request.conversation_id or ids.new_conversation_id
    return {
        "app_id": app.id,
        "user": user,  # resume is for the run's own user (end users are keyed by this string)
        "mode": request.mode,
        "message_id": ids.message_id,
        "conversation_id": conversation_id,
        "created_at": str(int(ids.created_at.timestamp())),
    }


def _prepare_and_commit(
    ctx: RunContext,
    given: App,
    user: str,
    known_user: EndUser | None,
    request: RunRequest,
    task_id: str,
    ids: RunIds,
    slot_key: str | None,
) -> RunSpec:
    try:
        with ctx.env.db.transaction(pinned=True) as session:
            return _prepare_in(
                session, ctx, given, user, known_user, request, task_id, ids, slot_key
            )
    except IntegrityError as error:
        # The app (hence its rows' foreign keys) may have gone while its snapshot was served.
        with ctx.env.db.sessions() as session:
            if session.get(App, given.id) is None:
                raise AppUnavailable() from error
        raise


def _prepare_in(
    session: Session,
    ctx: RunContext,
    given: App,
    user: str,
    known_user: EndUser | None,
    request: RunRequest,
    task_id: str,
    ids: RunIds,
    slot_key: str | None,
) -> RunSpec:
    # A detached app is the Service API's cached snapshot (dropped whenever the app changes):
    # reading it again would cost a query per run. An app of another session is read here.
    app = given if sa_inspect(given).detached else session.get(App, given.id)
    if app is None:
        raise AppUnavailable()
    # The end user as the cache knew it before the transaction (looked up on the loop).
    end_user = known_user or get_or_create_end_user(session, app, user, ctx.cache)
    planned = plan_run(
        session,
        app=app,
        end_user=end_user,
        request=request,
        settings=ctx.settings,
        task_id=task_id,
        ids=ids,
        cache=ctx.cache,
    )
    # The reads are done: the writes and the commit go out together (one round trip).
    with commit_together(session):
        write_run(session, app, planned, query=request.query)
        if ctx.inline is None:
            # The celery executor: the run itself is outbox work, durable like any other task.
            enqueue(
                session,
                RUN_TASK,
                queue="generation",
                kwargs={"spec": planned.spec.to_json(), "slot_key": slot_key},
            )
    return planned.spec


async def stop_run(ctx: RunContext, *, app: App, user: str, task_id: str) -> bool:
    """Ask the run to stop; only its owner can. False (and no effect) otherwise."""
    end_user_id = await asyncio.to_thread(_end_user_id, ctx.env.db, app.id, user)
    if end_user_id is None:
        return False
    meta = await ctx.env.eventlog.meta(task_id)
    if meta is None or meta.get("app_id") != app.id:
        return False
    return await ctx.env.stops.request_stop(task_id, f"end-user-{end_user_id}")


def _end_user_id(db: Database, app_id: str, user: str) -> str | None:
    with db.sessions() as session:
        found = session.scalars(
            select(EndUser.id).where(
                EndUser.app_id == app_id, EndUser.type == "service-api", EndUser.session_id == user
            )
        ).first()
        return str(found) if found else None


async def resumable_owner_check(
    ctx: RunContext, *, app: App, user: str, task_id: str
) -> dict[str, str]:
    """The run's metadata when `user` owns it (else 404: another user's run does not exist)."""
    meta = await ctx.env.eventlog.meta(task_id)
    if meta is None or meta.get("app_id") != app.id or meta.get("user") != user:
        raise NotFound("The run is unknown or its events have expired.")
    return meta


__all__ = [
    "DatabaseRunStore",
    "RunEnvironment",
    "RunRequest",
    "Usage",
    "check_limits",
    "end_interrupted_runs",
    "plan_run",
    "reap_stale_runs",
    "record_result",
    "run_spec",
    "start_run",
    "stop_run",
    "write_run",
]
