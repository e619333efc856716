"""Starting a run, for every kind: limits, the run's event log, one commit, the hand-off.

1. The key's rate and the app's concurrency slot (`check_limits`, atomic; 429 otherwise).
2. The run's event log is created (a Redis round trip, distributed) alongside the limits.
3. One transaction: the kind's planner validates and reads what the run needs (`plan`), then
   its writes and the commit go to the database together. Under the Celery executor the run
   itself is an outbox row of that transaction, durable like any other task.
4. The hand-off: the inline executor starts the run; its stop owner is registered (the one
   Redis step after the commit, and the only one allowed to fail without failing the start).

Early start (inline executor only): a planner may plan a run ahead of its transaction
(`plan_ahead`) when nothing in its spec comes from the database. Such a run starts at once and
its model call overlaps steps 2-3; `core/runs/early.py`'s gates keep it from writing its log
before the log exists and from storing its result before its rows exist, and a start that
fails cancels it.

A run started under an Idempotency-Key (`key`, see `services/runs/idempotency.py`) writes
the key with its rows, where a unique index lets only one start per key commit; the loser
raises `KeyTaken` (its start rolled back, its slot given back). Such a run never starts
early: a start that may lose that race must not have called the model.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from conduit.core.runs.early import StartGates
from conduit.core.runs.executors.inline import InlineExecutor
from conduit.core.runs.kinds import Event
from conduit.core.runs.limits import Limiter
from conduit.core.runs.spec import RunSpec, time_ordered_id
from conduit.db.models import App, EndUser, utcnow
from conduit.errors import AppUnavailable, ServiceUnavailable, TooManyRequests
from conduit.infra.cache import Cache
from conduit.infra.db import commit_together, pipeline_aborted
from conduit.infra.outbox import enqueue
from conduit.infra.settings import Settings
from conduit.services import model_providers
from conduit.services.end_users import SERVICE_API, cached_end_user, get_or_create_end_user
from conduit.services.runs.context import Runs

logger = logging.getLogger(__name__)

RUN_TASK = "conduit.generation.run"


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


@dataclass(frozen=True)
class RunKey:
    """A request's Idempotency-Key and the hash of the fields that define its run."""

    key: str
    request_hash: str


@dataclass(frozen=True)
class KeyedRun:
    """A run that a request started under an Idempotency-Key, as its record holds it: its
    task id, its request's hash and its names (the kind's ids, e.g. message and
    conversation)."""

    task_id: str
    request_hash: str
    names: dict[str, str]
    # An async run's task, when it is not `task_id` (a workflow run resumed after a pause runs
    # under new task ids; its task keeps the first).
    async_task_id: str | None = None


class KeyTaken(Exception):
    """The start lost the race for its Idempotency-Key: `run` is the winner's (this start
    rolled back)."""

    def __init__(self, run: KeyedRun) -> None:
        super().__init__(run.task_id)
        self.run = run


class Plan(Protocol):
    """What a planner decided in the start's transaction: the spec, and its writes."""

    @property
    def spec(self) -> RunSpec: ...

    def write(self, session: Session, app: App, key: RunKey | None = None) -> None:
        """Write the run's rows, with the request's Idempotency-Key if it has one (no reads:
        they go out with the commit)."""


class Planner(Protocol):
    """How runs of one kind of app are planned (`services/runs/chat.py` for chat and
    completion)."""

    def meta(self, app: App, request: Any, ids: RunIds) -> dict[str, str]:
        """What the run's event log keeps of it, beside its app, user and kind."""

    def uses_default_provider(self, app: App) -> bool:
        """Whether the app's model is the workspace's default (its spec then depends on
        whether the workspace has one)."""

    def plan_ahead(
        self,
        app: App,
        request: Any,
        settings: Settings,
        *,
        task_id: str,
        ids: RunIds,
        without_default_provider: bool,
    ) -> RunSpec | None:
        """The run's spec when nothing in it comes from the database (it may start early),
        else None."""

    def plan(
        self,
        session: Session,
        *,
        app: App,
        end_user: EndUser,
        request: Any,
        settings: Settings,
        task_id: str,
        ids: RunIds,
        cache: Cache | None,
    ) -> Plan:
        """Validate and read, in the start's transaction (nothing written)."""

    def asynchronous(self, request: Any) -> bool:
        """Whether the request asks for an async run (`response_mode: "async"`)."""

    # What a request with an Idempotency-Key needs (`services/runs/idempotency.py`).

    def fingerprint(self, request: Any) -> dict[str, Any]:
        """The request's fields that define its run, as validated (not how it is answered:
        a stream's repeat may block), hashed to tell a repeat from another request."""

    def check(self, app: App, request: Any) -> None:
        """Refuse what the start would refuse without the database (the request's mode
        against the app's): a repeat that attaches is refused the same way."""

    def names(self, spec: RunSpec) -> dict[str, str]:
        """The run's names beside its task id (a response's headers)."""

    def keyed_run(
        self, session: Session, *, app: App, user: str, user_type: str, key: str
    ) -> KeyedRun | None:
        """The run `user` (an end user of `user_type`) of `app` started under `key`, if any."""

    def stored_events(self, session: Session, *, app: App, run: KeyedRun) -> list[Event] | None:
        """The run's events rebuilt from its stored result (for once its log has expired);
        None while it has not ended."""


def app_slot_key(app_id: str) -> str:
    return f"app-active:{app_id}"


async def check_limits(
    limiter: Limiter,
    settings: Settings,
    *,
    app: App,
    key_id: str | None,
    task_id: str,
    queued: bool,
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
    # A run renews its slot with its lease (`run_to_end`), so a dead executor's slot frees when
    # its lease lapses. Until its executor starts it, the slot must outlast its wait: the
    # inline executor starts it at once, a queued run may wait as long as the takeover allows.
    runs = settings.runs
    ttl = (
        float(max(runs.max_seconds, runs.async_max_seconds) + 60) if queued else runs.lease_seconds
    )
    if not await limiter.acquire(slot, limit=limit, ttl=ttl, holder=task_id):
        # The real time until a slot can free: the first one's lease (or wait) running out.
        wait = await limiter.free_in(slot)
        raise TooManyRequests("Too many requests. Please try again later.", retry_after=wait)
    return slot


async def start_run(
    runs: Runs,
    planner: Planner,
    *,
    app: App,
    key_id: str | None,
    user: str,
    request: Any,
    key: RunKey | None = None,
    user_type: str = SERVICE_API,
) -> RunSpec:
    """Check limits and open the run's event log, write its rows (one commit), hand the run to
    the executor and register its stop owner. Returns its spec. With a `key`: raises KeyTaken
    when another start committed a run under it first. `user` is an end user of `user_type`
    (the Service API's `user` string, or a web end user's session id)."""
    asynchronous = planner.asynchronous(request)
    # An async run always goes to the `generation` queue: nobody waits on its request, and a
    # worker that dies hands it to another; the others run where the server's executor runs.
    inline = None if asynchronous else runs.inline
    if inline is not None and not inline.accepting:
        raise ServiceUnavailable("The server is shutting down; retry on another instance.")
    # An async run's id is time-ordered: its status can tell an expired task from none.
    task_id = time_ordered_id() if asynchronous else str(uuid.uuid4())
    ids = RunIds.new()
    eventlog, stops, limiter = runs.backends.eventlog, runs.backends.stops, runs.backends.limiter
    # The log's creation (a Redis round trip, distributed) starts now and runs alongside the
    # limits and, for a run that starts early, the model call; it completes before the commit
    # makes the run visible to another process (a worker may start it at once). A request
    # refused meanwhile leaves only a log that expires.
    meta = {"app_id": app.id, "user": user, **planner.meta(app, request, ids)}
    if user_type != SERVICE_API:
        meta["user_type"] = user_type  # absent: a Service API user (`stop.owns_log`)
    created = asyncio.ensure_future(
        eventlog.create(task_id, meta=meta, written_here=inline is not None)
    )
    created.add_done_callback(_retrieved)
    slot_key, without_default, known_user = await _limits(
        runs, planner, app, key_id, user, user_type, task_id, queued=inline is None
    )
    ttl = float(runs.settings.runs.max_seconds + 600)
    gates: StartGates | None = None
    early: asyncio.Task[Any] | None = None
    registration: asyncio.Future[None] | None = None
    try:
        if inline is not None and key is None:
            # A run that needs nothing from the database starts its model call now, while its
            # log is created and its start commits: both hide in the model's time to first
            # token (see the module's docstring).
            ahead = planner.plan_ahead(
                app,
                request,
                runs.settings,
                task_id=task_id,
                ids=ids,
                without_default_provider=without_default,
            )
            if ahead is not None:
                gates = StartGates.new()
                early = inline.submit(ahead, slot_key, gates=gates)
        await asyncio.shield(created)
        if gates is not None:
            gates.log_created()
        if known_user is not None:
            # The stop owner is known: it is registered while the start commits. (Should the
            # commit fail, the registration of a run that never existed just expires.)
            registration = asyncio.ensure_future(
                stops.register(task_id, owner_of(known_user), ttl=ttl)
            )
            registration.add_done_callback(_retrieved)
        start = _Start(
            runs,
            planner,
            app,
            user,
            user_type,
            known_user,
            request,
            task_id,
            ids,
            slot_key,
            key,
            inline,
        )
        spec = await asyncio.to_thread(_prepare_and_commit, start)
    except BaseException:
        # Nothing is committed: the run does not exist. (A Redis outage fails the log's
        # creation or the limits above, before the transaction: a 503 with nothing written.)
        if early is not None and gates is not None:
            gates.fail()
            early.cancel()  # the run gives its slot back as it ends
        elif slot_key:
            await _released(limiter, slot_key, task_id)
        raise
    # The run is committed: from here on nothing may fail the request, or its client would be
    # told of a failure (and retry) while the run goes on. The inline executor starts it now;
    # under the celery executor the outbox relays it after the commit.
    if inline is not None:
        if gates is not None:
            gates.start_committed()
        else:
            inline.submit(spec, slot_key)
    # The one Redis step after the commit, the stop owner's registration (the owner may be
    # known only in the transaction), is tolerant: the run starts, streams and is stored
    # without it; only a stop request for it finds no owner. It is awaited before the
    # response, since a client learns the task id only from it and may stop the run at once.
    try:
        await _registered(runs, spec, ttl, registration)
    except Exception:
        logger.warning("run %s: registering its stop owner failed", task_id, exc_info=True)
    return spec


async def _registered(
    runs: Runs, spec: RunSpec, ttl: float, started: asyncio.Future[None] | None
) -> None:
    """The run's stop owner registered: by `started`, or now (the owner known only now)."""
    if started is None:
        await runs.backends.stops.register(spec.task_id, spec.owner, ttl=ttl)
    else:
        await started


async def _released(limiter: Limiter, slot_key: str, task_id: str) -> None:
    """Give back the slot of a start that failed. Its own failure (Redis down: likely what
    failed the start) must not hide the start's: the slot expires with its ttl anyway."""
    try:
        await limiter.release(slot_key, task_id)
    except Exception:
        logger.warning("run %s: giving its slot back failed", task_id, exc_info=True)


def _retrieved(done: asyncio.Future[None]) -> None:
    """A log's creation or a stop's registration whose request failed first: its own failure
    matters to nobody."""
    if not done.cancelled():
        done.exception()


async def _limits(
    runs: Runs,
    planner: Planner,
    app: App,
    key_id: str | None,
    user: str,
    user_type: str,
    task_id: str,
    *,
    queued: bool,
) -> tuple[str | None, bool, EndUser | None]:
    """`check_limits`, then the end user if the cache holds it and, for the inline executor,
    whether the cache knows that the app's workspace has no default provider. Returns the
    slot key, that knowledge and the end user; raises the limits' refusal.

    One after the other: without limits set, and with the cache's answers in memory (all but
    the first read of a key in a while), none of them waits, so the request goes on within
    the same turn of the event loop (running them as tasks cost two turns, each one a wait
    behind every other ready callback under load)."""
    limiter = runs.backends.limiter
    slot_key = await check_limits(
        limiter, runs.settings, app=app, key_id=key_id, task_id=task_id, queued=queued
    )
    try:
        without_default = False if queued else await _without_default_provider(runs, planner, app)
        known_user = (
            None if runs.cache is None else await cached_end_user(runs.cache, app, user, user_type)
        )
    except BaseException:
        if slot_key:
            await _released(limiter, slot_key, task_id)
        raise
    return slot_key, without_default, known_user


async def _without_default_provider(runs: Runs, planner: Planner, app: App) -> bool:
    """Whether the cache says that the app's workspace has no default provider (False when it
    does not know)."""
    if runs.cache is None:
        return False
    if not planner.uses_default_provider(app):
        return False  # the app names its provider: the workspace default does not matter
    return await model_providers.aknown_without_default(runs.cache, app.tenant_id)


@dataclass(frozen=True)
class _Start:
    """What a start's transaction needs: the run's request and ids as decided on the loop,
    and the executor that takes it (None: the `generation` queue, through the outbox)."""

    runs: Runs
    planner: Planner
    app: App
    user: str
    user_type: str
    known_user: EndUser | None
    request: Any
    task_id: str
    ids: RunIds
    slot_key: str | None
    key: RunKey | None
    inline: InlineExecutor | None


def _prepare_and_commit(start: _Start) -> RunSpec:
    try:
        try:
            return _commit_run(start, pipelined=True)
        except OperationalError as error:
            if not pipeline_aborted(error):
                raise
            # Which error of an aborted pipeline arrives first is a matter of timing: the
            # same writes again, one statement at a time, raise the real one (or commit).
            return _commit_run(start, pipelined=False)
    except IntegrityError as error:
        # The app (hence its rows' foreign keys) may have gone while its snapshot was served;
        # or another start committed a run under the same Idempotency-Key first.
        runs, given, key = start.runs, start.app, start.key
        with runs.db.sessions() as session:
            if session.get(App, given.id) is None:
                raise AppUnavailable() from error
            if key is not None:
                taken = start.planner.keyed_run(
                    session, app=given, user=start.user, user_type=start.user_type, key=key.key
                )
                if taken is not None:
                    raise KeyTaken(taken) from error
        raise


def _commit_run(start: _Start, *, pipelined: bool) -> RunSpec:
    runs, given = start.runs, start.app
    with runs.db.transaction(pinned=True) as session:
        # A detached app is the Service API's cached snapshot (dropped whenever the app
        # changes): reading it again would cost a query per run. Another session's app is
        # read here.
        app = given if sa_inspect(given).detached else session.get(App, given.id)
        if app is None:
            raise AppUnavailable()
        # The end user as the cache knew it before the transaction (looked up on the loop).
        end_user = start.known_user or get_or_create_end_user(
            session, app, start.user, runs.cache, start.user_type
        )
        plan = start.planner.plan(
            session,
            app=app,
            end_user=end_user,
            request=start.request,
            settings=runs.settings,
            task_id=start.task_id,
            ids=start.ids,
            cache=runs.cache,
        )
        # The reads are done: the writes and the commit go out together (one round trip).
        with commit_together(session, pipelined=pipelined):
            plan.write(session, app, start.key)
            if start.inline is None:
                # Queued (the celery executor, or an async run): the run itself is outbox
                # work, durable like any task.
                enqueue(
                    session,
                    RUN_TASK,
                    queue="generation",
                    kwargs={"spec": plan.spec.to_json(), "slot_key": start.slot_key},
                )
        return plan.spec
