"""Starting a run under an Idempotency-Key (`services/runs/idempotency.py`) on a real database
(SQLite, or PostgreSQL in the distributed mode), the in-process run backends and the fake
OpenAI server: a repeat attaches without a slot, a model call or a row; two simultaneous
starts with one key make one run, and the loser neither calls the model nor keeps its slot;
another request under the key is refused; once the run's log has expired, or is lost, a
repeat answers from the stored message (the same blocking reply, the same assembled answer)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from conduit.api.runs import blocking_response
from conduit.core.runs.eventlog.memory import MemoryEventLog
from conduit.core.runs.events import RunEvent
from conduit.db.models import App, Conversation, EndUser, Message, OutboxMessage
from conduit.errors import IdempotencyKeyInProgress, IdempotencyKeyReused, TooManyRequests
from conduit.infra.cache import MemoryCache
from conduit.infra.db import Database
from conduit.infra.settings import Settings, load_settings
from conduit.services import runs
from conduit.services.runs import ChatRequest, StartedRun
from conduit.services.runs import Runs as RunContext
from tests.fakes.fake_openai import FakeOpenAIThread
from tests.integration.test_early_start import (
    context,
    hold_the_tables,
    make_app,
    slots_after_the_run_ended,
)


@pytest.fixture
def settings(fake: FakeOpenAIThread, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    for name in list(os.environ):
        if name.startswith("CONDUIT_") and not name.startswith("CONDUIT_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CONDUIT_DATA_DIR", str(tmp_path / ".conduit"))
    monkeypatch.setenv("CONDUIT_MODEL_BASE_URL", fake.base_url)
    monkeypatch.setenv("CONDUIT_MODEL_MAX_RETRIES", "0")
    monkeypatch.setenv("CONDUIT_RUNS_MAX_ACTIVE_PER_APP", "4")
    return load_settings()


def request(query: str = "Hello there") -> ChatRequest:
    return ChatRequest(
        mode="chat", inputs={}, query=query, response_mode="streaming", auto_generate_name=False
    )


def keyed(
    ctx: RunContext, app: App, *, key: str = "key-1", query: str = "Hello there"
) -> Awaitable[StartedRun]:
    return runs.start_or_attach_chat_run(
        ctx, app=app, key_id=None, user="alice", request=request(query), key=key
    )


async def to_the_end(started: StartedRun) -> list[RunEvent]:
    return [event async for event in started.events.follow()]


async def blocking_reply(started: StartedRun) -> tuple[int, Any]:
    response = await blocking_response(started.events, mode="chat")
    return response.status_code, orjson.loads(bytes(response.body))


def rows(db: Database) -> dict[str, int]:
    with db.sessions() as session:
        return {
            model.__tablename__: int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Message, Conversation, EndUser, OutboxMessage)
        }


def test_a_repeat_attaches_without_a_slot_a_model_call_or_a_row(
    db: Database, settings: Settings, fake: FakeOpenAIThread
) -> None:
    cache = MemoryCache()
    app = make_app(db, cache)
    app.max_active_requests = 1  # the snapshot's limit: one run at a time
    fake.control(pace_ms=30.0)

    async def scenario() -> tuple[StartedRun, StartedRun, dict[str, int], list[RunEvent]]:
        async with context(db, settings, cache) as ctx:
            first = await keyed(ctx, app)
            with pytest.raises(TooManyRequests):  # the app's one slot is the first run's
                await runs.start_chat_run(
                    ctx, app=app, key_id=None, user="alice", request=request("other")
                )
            written = rows(db)
            repeat = await keyed(ctx, app)
            assert rows(db) == written
            first_events, repeat_events = await asyncio.gather(
                to_the_end(first), to_the_end(repeat)
            )
            assert repeat_events == first_events
            return first, repeat, written, first_events

    first, repeat, written, events = asyncio.run(scenario())
    assert (repeat.task_id, repeat.names) == (first.task_id, first.names)
    assert (first.attached, repeat.attached) == (False, True)
    assert events[-1].event == "message_end"
    assert written["messages"] == 1
    assert fake.stats()["requests"] == 1


def test_simultaneous_starts_with_one_key_make_one_run_and_the_loser_calls_no_model(
    db: Database, settings: Settings, fake: FakeOpenAIThread
) -> None:
    cache = MemoryCache()
    app = make_app(db, cache)
    holding = threading.Event()
    holder = threading.Thread(target=hold_the_tables, args=(db, 1.0, holding))
    holder.start()
    assert holding.wait(5)

    async def scenario() -> tuple[list[StartedRun], int]:
        async with context(db, settings, cache) as ctx:
            both = asyncio.gather(keyed(ctx, app), keyed(ctx, app))
            # Both starts wait for the held tables; a keyed run never starts early, so no
            # model call goes out before a start has committed.
            await asyncio.sleep(0.5)
            assert fake.stats()["requests"] == 0
            started = list(await both)
            await asyncio.gather(*(to_the_end(one) for one in started))
            return started, await slots_after_the_run_ended(ctx, app)

    started, free_slots = asyncio.run(scenario())
    holder.join()
    assert len({one.task_id for one in started}) == 1
    assert sorted(one.attached for one in started) == [False, True]
    assert free_slots == 4  # the loser gave its slot back, the winner once it ended
    assert rows(db)["messages"] == 1
    assert fake.stats()["requests"] == 1


def test_the_key_with_another_request_is_refused_and_writes_nothing(
    db: Database, settings: Settings, fake: FakeOpenAIThread
) -> None:
    cache = MemoryCache()
    app = make_app(db, cache)

    async def scenario() -> None:
        async with context(db, settings, cache) as ctx:
            await to_the_end(await keyed(ctx, app, query="one"))
            written = rows(db)
            with pytest.raises(IdempotencyKeyReused):
                await keyed(ctx, app, query="two")
            assert rows(db) == written
            # Another key is another run.
            await to_the_end(await keyed(ctx, app, key="key-2", query="two"))
            assert rows(db)["messages"] == written["messages"] + 1

    asyncio.run(scenario())
    assert fake.stats()["requests"] == 2


@pytest.mark.parametrize("fails", [False, True], ids=["answered", "failed"])
def test_a_repeat_after_the_log_expired_answers_from_the_stored_message(
    db: Database, settings: Settings, fake: FakeOpenAIThread, fails: bool
) -> None:
    cache = MemoryCache()
    app = make_app(db, cache)
    if fails:
        fake.control("status-500")

    async def scenario() -> None:
        log = MemoryEventLog(retention=0.2)
        async with context(db, settings, cache, log) as ctx:
            first = await keyed(ctx, app)
            streamed = await to_the_end(first)
            replied = await blocking_reply(await keyed(ctx, app))
            for _ in range(50):
                if await log.meta(first.task_id) is None:
                    break
                await asyncio.sleep(0.05)
            assert await log.meta(first.task_id) is None  # expired
            again = await keyed(ctx, app)
            assert (again.task_id, again.names, again.attached) == (
                first.task_id,
                first.names,
                True,
            )
            assert await blocking_reply(again) == replied
            rebuilt = await to_the_end(await keyed(ctx, app))
            assert rebuilt[-1].payload == streamed[-1].payload  # message_end, or the error
            assert answer_of(rebuilt) == answer_of(streamed)

    asyncio.run(scenario())
    assert fake.stats()["requests"] == 1


def answer_of(events: list[RunEvent]) -> str:
    return "".join(str(e.payload.get("answer", "")) for e in events if e.event == "message")


class LostLog(MemoryEventLog):
    """A log that no longer knows some runs' metadata, as a Redis restarted empty would not
    (their events still reach the followers already reading them)."""

    def __init__(self) -> None:
        super().__init__()
        self.lost: set[str] = set()

    async def meta(self, task_id: str) -> dict[str, str] | None:
        return None if task_id in self.lost else await super().meta(task_id)


def test_a_run_going_on_whose_log_is_lost_is_in_progress_then_answers_once_stored(
    db: Database, settings: Settings, fake: FakeOpenAIThread
) -> None:
    cache = MemoryCache()
    app = make_app(db, cache)
    fake.control(pace_ms=30.0)

    async def scenario() -> None:
        log = LostLog()
        async with context(db, settings, cache, log) as ctx:
            first = await keyed(ctx, app)
            log.lost.add(first.task_id)
            with pytest.raises(IdempotencyKeyInProgress):
                await keyed(ctx, app)
            streamed = await to_the_end(first)
            assert ctx.inline is not None
            for _ in range(100):  # the run is stored before its log closes; then it ends
                if ctx.inline.active == 0:
                    break
                await asyncio.sleep(0.02)
            rebuilt = await to_the_end(await keyed(ctx, app))
            assert answer_of(rebuilt) == answer_of(streamed) != ""
            assert rebuilt[-1].payload == streamed[-1].payload

    asyncio.run(scenario())
    assert fake.stats()["requests"] == 1
