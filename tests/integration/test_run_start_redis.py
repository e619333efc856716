"""A run's start when Redis fails (`services/runs.start_run`, both executors, on the run
backends `core/runs/backends.py` builds for a Redis of the test's own): before the commit the
start fails with Redis's own error (the API's 503) and writes nothing; the one Redis step after
the commit, the stop owner's registration, may fail without failing the start, whose run is
committed and runs. Real database, real Redis, the fake OpenAI server at the edge."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from conduit.bootstrap import build_models, build_retriever, build_runners, build_runs
from conduit.core.runs.backends import build_run_backends
from conduit.core.runs.stop_redis import RedisStopRegistry
from conduit.db.models import App, Conversation, EndUser, Message, OutboxMessage
from conduit.infra.cache import MemoryCache
from conduit.infra.db import Database
from conduit.infra.redis import build_async_redis
from conduit.infra.resources import Resources
from conduit.infra.settings import Settings, load_settings
from conduit.services import runs
from conduit.services.runs import ChatRequest as RunRequest
from conduit.services.runs import Runs as RunContext
from tests import support
from tests.fakes.fake_openai import FakeOpenAIThread
from tests.support import add_chat_app

EXECUTORS = pytest.mark.parametrize("executor", ["inline", "celery"])


@pytest.fixture
def settings(
    fake: FakeOpenAIThread,
    private_redis: support.PrivateRedis,
    executor: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Settings:
    for name in list(os.environ):
        if name.startswith("CONDUIT_") and not name.startswith("CONDUIT_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CONDUIT_DATA_DIR", str(tmp_path / ".conduit"))
    monkeypatch.setenv("CONDUIT_MODEL_BASE_URL", fake.base_url)
    monkeypatch.setenv("CONDUIT_REDIS_URL", private_redis.url)
    monkeypatch.setenv("CONDUIT_RUNS_EXECUTOR", executor)
    monkeypatch.setenv("CONDUIT_RUNS_MAX_ACTIVE_PER_APP", "4")
    monkeypatch.setenv("CONDUIT_RUNS_REQUESTS_PER_MINUTE_PER_KEY", "1000")
    return load_settings()


@contextlib.asynccontextmanager
async def context(
    db: Database, settings: Settings, *, stops_url: str | None = None
) -> AsyncIterator[RunContext]:
    """The run machinery as `conduit/bootstrap.py` wires a distributed server; `stops_url`:
    its stop registry's Redis, if another."""
    models = build_models(settings, db)
    backends = build_run_backends(settings)
    if stops_url is not None:
        await backends.stops.aclose()
        backends.stops = RedisStopRegistry(build_async_redis(stops_url))
    resources = Resources(settings, db, MemoryCache())
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
        await backends.aclose()


def make_app(db: Database) -> App:
    with db.transaction() as session:
        app = add_chat_app(session, "Redis")
        session.expunge(app)
    return app


def request() -> RunRequest:
    return RunRequest(
        mode="chat", inputs={}, query="Hello there", response_mode="streaming",
        auto_generate_name=False,
    )  # fmt: skip


def rows(db: Database) -> dict[str, int]:
    with db.sessions() as session:
        return {
            model.__name__: int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Message, Conversation, EndUser, OutboxMessage)
        }


@EXECUTORS
def test_redis_down_before_the_commit_fails_the_start_fast_and_writes_nothing(
    db: Database, settings: Settings, private_redis: support.PrivateRedis, executor: str
) -> None:
    app = make_app(db)
    before = rows(db)

    async def scenario() -> None:
        async with context(db, settings) as ctx:
            private_redis.stop()
            began = time.monotonic()
            with pytest.raises(redis.ConnectionError):
                await runs.start_chat_run(
                    ctx, app=app, key_id="key", user="alice", request=request()
                )
            assert time.monotonic() - began < 1.0
            private_redis.start()
            # The first start after Redis returned succeeds.
            spec = await runs.start_chat_run(
                ctx, app=app, key_id="key", user="alice", request=request()
            )
            assert spec.task_id

    asyncio.run(scenario())
    after = rows(db)
    assert after["Message"] == before["Message"] + 1  # only the start after the return's


@EXECUTORS
def test_a_stop_registration_failing_after_the_commit_does_not_fail_the_start(
    db: Database,
    settings: Settings,
    private_redis: support.PrivateRedis,
    fake: FakeOpenAIThread,
    executor: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(db)
    gone = f"redis://127.0.0.1:{support.free_port()}/0"  # a stop registry whose Redis is gone

    async def scenario() -> str:
        async with context(db, settings, stops_url=gone) as ctx:
            spec = await runs.start_chat_run(
                ctx, app=app, key_id="key", user="alice", request=request()
            )
            if ctx.inline is not None:  # the run runs to its end
                for _ in range(250):
                    if ctx.inline.active == 0:
                        break
                    await asyncio.sleep(0.02)
                assert ctx.inline.active == 0
            return spec.task_id

    task_id = asyncio.run(scenario())
    assert any("registering its stop owner failed" in r.getMessage() for r in caplog.records)
    with db.sessions() as session:
        message = session.scalars(select(Message).where(Message.task_id == task_id)).one()
        if executor == "inline":
            assert message.status == "succeeded" and message.answer
        else:  # committed with its outbox row: a worker runs it
            assert message.status == "running"
            outbox = session.scalars(
                select(OutboxMessage).where(OutboxMessage.task == "conduit.generation.run")
            )
            assert len(list(outbox)) == 1
