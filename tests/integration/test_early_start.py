"""A run that needs nothing from the database starts its model call while its log is created
and its start commits (`services/runs.start_run` with the inline executor): the upstream
request is sent before either is done, the run writes its log only once it exists and stores
its result only after the commit, and a start whose log or commit fails cancels the model call,
gives the slot back and leaves no row. Real database, real in-process backends,
the fake OpenAI server at the edge."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, text

from conduit.bootstrap import build_models, build_retriever, build_runners, build_runs
from conduit.core.runs.backends import RunBackends
from conduit.core.runs.eventlog.memory import MemoryEventLog
from conduit.core.runs.limits_memory import MemoryLimiter
from conduit.core.runs.spec import RunSpec
from conduit.core.runs.stop_memory import MemoryStopRegistry
from conduit.db.models import App, Message
from conduit.errors import AppUnavailable
from conduit.infra.cache import MemoryCache
from conduit.infra.db import Database
from conduit.infra.resources import Resources
from conduit.infra.settings import Settings, load_settings
from conduit.services import runs
from conduit.services.model_providers import app_model_ref
from conduit.services.runs import ChatRequest as RunRequest
from conduit.services.runs import Runs as RunContext
from conduit.services.runs.start import app_slot_key
from tests.fakes.fake_openai import FakeOpenAIThread
from tests.support import add_chat_app


@pytest.fixture
def settings(fake: FakeOpenAIThread, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    for name in list(os.environ):
        if name.startswith("CONDUIT_") and not name.startswith("CONDUIT_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CONDUIT_DATA_DIR", str(tmp_path / ".conduit"))
    monkeypatch.setenv("CONDUIT_MODEL_BASE_URL", fake.base_url)
    monkeypatch.setenv("CONDUIT_RUNS_MAX_ACTIVE_PER_APP", "4")
    return load_settings()


def make_app(db: Database, cache: MemoryCache) -> App:
    """A chat app on the server default, in a workspace the cache knows has no default."""
    with db.transaction() as session:
        app = add_chat_app(session, "Early")
        assert app_model_ref(session, app, None, cache) is None  # remembered from here on
        session.expunge(app)  # the Service API's detached snapshot
    return app


@contextlib.asynccontextmanager
async def context(
    db: Database, settings: Settings, cache: MemoryCache, eventlog: MemoryEventLog | None = None
) -> AsyncIterator[RunContext]:
    """The run machinery as `conduit/bootstrap.py` wires it for an inline server."""
    models = build_models(settings, db)
    backends = RunBackends(
        eventlog=eventlog or MemoryEventLog(),
        stops=MemoryStopRegistry(),
        limiter=MemoryLimiter(),
        shared=True,
    )
    resources = Resources(settings, db, cache)
    try:
        yield build_runs(
            settings,
            resources,
            models,
            build_runners(settings, models, db, build_retriever(settings, db)),
            backends,
        )
    finally:
        await models.aclose()


def request() -> RunRequest:
    return RunRequest(
        mode="chat", inputs={}, query="Hello there", response_mode="streaming",
        auto_generate_name=False,
    )  # fmt: skip


def hold_the_tables(
    db: Database, seconds: float, holding: threading.Event, release: threading.Event | None = None
) -> None:
    """Keep every writer of `end_users` and `conversations` (a start's first inserts) waiting
    for `seconds`, or until `release` is set when one is given (SQLite: the write lock)."""
    with db.transaction() as session:
        if db.dialect == "postgresql":
            session.execute(text("LOCK TABLE end_users, conversations IN ACCESS EXCLUSIVE MODE"))
        else:
            session.execute(text("SELECT 1"))  # BEGIN IMMEDIATE has taken the write lock
        holding.set()
        if release is None:
            time.sleep(seconds)
        else:
            release.wait(seconds)


async def slots_after_the_run_ended(ctx: RunContext, app: App) -> int:
    """Once the cancelled run has ended: how many of the app's 4 slots can be taken (4 when
    it gave its own back)."""
    assert ctx.inline is not None
    for _ in range(100):
        if ctx.inline.active == 0:
            break
        await asyncio.sleep(0.02)
    assert ctx.inline.active == 0
    slot = app_slot_key(app.id)
    taken = [
        await ctx.backends.limiter.acquire(slot, limit=4, ttl=60, holder=f"h{n}") for n in range(4)
    ]
    return sum(taken)


def assert_cancelled_without_a_trace(db: Database, fake: FakeOpenAIThread) -> None:
    """The upstream stream was closed, not read to its end, and no message row is left."""
    stats = fake.wait_for_stats(lambda s: s["requests"] == 1 and s["in_flight"] == 0, 5)
    assert stats["disconnects"] == 1
    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 0


def test_the_model_call_starts_while_the_start_commits(
    db: Database, settings: Settings, fake: FakeOpenAIThread
) -> None:
    cache = MemoryCache()
    app = make_app(db, cache)
    holding = threading.Event()
    holder = threading.Thread(target=hold_the_tables, args=(db, 1.0, holding))
    holder.start()
    assert holding.wait(5)

    async def scenario() -> tuple[RunSpec, int, list[str]]:
        async with context(db, settings, cache) as ctx:
            assert ctx.inline is not None
            start = asyncio.create_task(
                runs.start_chat_run(ctx, app=app, key_id=None, user="alice", request=request())
            )
            # The commit waits for the held tables; the upstream request goes out meanwhile.
            await asyncio.to_thread(fake.wait_for_stats, lambda s: s["requests"] == 1, 0.8)
            assert not start.done()
            spec = await start
            events = [e.event async for e in ctx.backends.eventlog.follow(spec.task_id)]
            await asyncio.sleep(0.05)
            return spec, ctx.inline.active, events

    spec, active, events = asyncio.run(scenario())
    holder.join()
    assert events[-1] == "message_end" and events.count("message") >= 1
    assert active == 0
    with db.sessions() as session:
        message = session.get(Message, spec.body.message_id)
        assert message is not None and message.status == "succeeded" and message.answer
        assert message.conversation_id == spec.body.conversation_id


def test_a_start_that_fails_to_commit_cancels_its_model_call(
    db: Database, settings: Settings, fake: FakeOpenAIThread
) -> None:
    cache = MemoryCache()
    app = make_app(db, cache)
    with db.transaction() as session:  # deleted after its snapshot was served
        session.execute(delete(App).where(App.id == app.id))
    fake.control(pace_ms=200.0)  # a slow answer: still streaming when the commit fails
    # The commit is held until the upstream request is out: a commit that failed at once
    # could cancel the call before it left (nothing to close upstream, so nothing to check).
    holding, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_the_tables, args=(db, 10.0, holding, release))
    holder.start()
    assert holding.wait(5)

    async def scenario() -> int:
        async with context(db, settings, cache) as ctx:
            assert ctx.inline is not None
            start = asyncio.create_task(
                runs.start_chat_run(ctx, app=app, key_id=None, user="alice", request=request())
            )
            try:
                await asyncio.to_thread(fake.wait_for_stats, lambda s: s["requests"] == 1, 5)
                assert not start.done()
            finally:
                release.set()
            with pytest.raises(AppUnavailable):
                await start
            return await slots_after_the_run_ended(ctx, app)

    try:
        assert asyncio.run(scenario()) == 4
    finally:
        release.set()
        holder.join()
    assert_cancelled_without_a_trace(db, fake)


class SlowLog(MemoryEventLog):
    """An event log whose `create` waits to be let through, then succeeds or fails (as a Redis
    round trip in a loaded or broken Redis would)."""

    def __init__(self, *, fails: bool = False) -> None:
        super().__init__()
        self.let_through = asyncio.Event()
        self.fails = fails

    async def create(
        self, task_id: str, *, meta: dict[str, str] | None = None, written_here: bool = True
    ) -> None:
        await self.let_through.wait()
        if self.fails:
            raise ConnectionError("Redis went away")
        await super().create(task_id, meta=meta)


def test_the_model_call_starts_while_the_log_is_created(
    db: Database, settings: Settings, fake: FakeOpenAIThread
) -> None:
    cache = MemoryCache()
    app = make_app(db, cache)

    async def scenario() -> tuple[RunSpec, list[int]]:
        log = SlowLog()
        async with context(db, settings, cache, log) as ctx:
            start = asyncio.create_task(
                runs.start_chat_run(ctx, app=app, key_id=None, user="alice", request=request())
            )
            await asyncio.to_thread(fake.wait_for_stats, lambda s: s["requests"] == 1, 5)
            await asyncio.sleep(0.2)  # the first tokens have come: they wait for the log
            assert not start.done()
            log.let_through.set()
            spec = await start
            seqs = [e.seq async for e in log.follow(spec.task_id)]
            return spec, seqs

    spec, seqs = asyncio.run(scenario())
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 2  # every event, in order
    with db.sessions() as session:
        message = session.get(Message, spec.body.message_id)
        assert message is not None and message.status == "succeeded" and message.answer


def test_a_log_that_cannot_be_created_cancels_the_model_call(
    db: Database, settings: Settings, fake: FakeOpenAIThread
) -> None:
    cache = MemoryCache()
    app = make_app(db, cache)
    fake.control(pace_ms=200.0)  # a slow answer: still streaming when the log fails

    async def scenario() -> int:
        log = SlowLog(fails=True)
        async with context(db, settings, cache, log) as ctx:
            assert ctx.inline is not None
            start = asyncio.create_task(
                runs.start_chat_run(ctx, app=app, key_id=None, user="alice", request=request())
            )
            await asyncio.to_thread(fake.wait_for_stats, lambda s: s["requests"] == 1, 5)
            log.let_through.set()
            with pytest.raises(ConnectionError):
                await start
            return await slots_after_the_run_ended(ctx, app)

    assert asyncio.run(scenario()) == 4
    assert_cancelled_without_a_trace(db, fake)
