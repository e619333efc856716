"""The takeover on a real database (SQLite, or PostgreSQL in the distributed mode) and the run
backends of the mode (Redis in the distributed mode): it ends the runs whose executor is gone —
a lease that lapsed after a renewal, or a run never renewed long after the longest a run may
take — with the answer its log holds (else its last checkpoint) and an `error` event that ends
its log, and leaves every other run alone; a renewal keeps a run alive (storing a checkpoint)
and refuses a run that is no longer running."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sqlalchemy import event, select, update

from conduit.core.runs.backends import build_run_backends
from conduit.core.runs.kinds import Execution
from conduit.core.runs.leases import LeaseKeeper
from conduit.core.runs.spec import RunSpec
from conduit.db.models import Message, utcnow
from conduit.infra.db import Database
from conduit.infra.settings import Settings, load_settings
from conduit.services.end_users import get_or_create_end_user
from conduit.services.runs import end_interrupted_runs, take_over_dead_runs
from conduit.services.runs.store import MessageStore
from tests import support
from tests.conftest import DISTRIBUTED
from tests.support import add_chat_app

LEASE = 30
MAX_SECONDS = 600


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Settings]:
    for name in list(os.environ):
        if name.startswith("CONDUIT_") and not name.startswith("CONDUIT_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CONDUIT_DATA_DIR", str(tmp_path / ".conduit"))
    monkeypatch.setenv("CONDUIT_RUNS_LEASE_SECONDS", str(LEASE))
    monkeypatch.setenv("CONDUIT_RUNS_MAX_SECONDS", str(MAX_SECONDS))
    redis_url = None
    if DISTRIBUTED:
        redis_url = support.fresh_redis_url()
        monkeypatch.setenv("CONDUIT_REDIS_URL", redis_url)
    yield load_settings()
    support.release_redis_url(redis_url)


def take_over(db: Database, settings: Settings, before: Any = None) -> int:
    """One takeover pass on the mode's backends; `before(backends)` runs first on its loop."""

    async def scenario() -> int:
        backends = build_run_backends(settings)
        try:
            if before is not None:
                await before(backends)
            return await take_over_dead_runs(db, backends, settings)
        finally:
            await backends.aclose()

    return asyncio.run(scenario())


def running(db: Database, **ages: tuple[float, float | None]) -> dict[str, str]:
    """A `running` message per name, created and last renewed (age in seconds; None: never)
    as given."""
    now = utcnow()
    ids: dict[str, str] = {}
    with db.transaction() as session:
        app = add_chat_app(session, "Reaped")
        user = get_or_create_end_user(session, app, "alice")
        for name, (created, renewed) in ages.items():
            message = Message(
                app_id=app.id, end_user_id=user.id, query=name, status="running", answer="part"
            )
            session.add(message)
            session.flush()
            session.execute(
                update(Message)
                .where(Message.id == message.id)
                .values(
                    created_at=now - timedelta(seconds=created),
                    renewed_at=None if renewed is None else now - timedelta(seconds=renewed),
                )
            )
            ids[name] = message.id
    return ids


def statuses(db: Database, ids: dict[str, str]) -> dict[str, tuple[str, str]]:
    with db.sessions() as session:
        rows = session.execute(
            select(Message.id, Message.status, Message.answer).where(Message.id.in_(ids.values()))
        ).all()
    by_id = {row[0]: (row[1], row[2]) for row in rows}
    return {name: by_id[message_id] for name, message_id in ids.items()}


def test_the_reaper_ends_only_runs_whose_executor_is_gone(db: Database, settings: Settings) -> None:
    ids = running(
        db,
        renewed_just_now=(300, 1),
        lease_lapsed=(300, LEASE + 5),
        queued_a_while=(120, None),  # never renewed, but younger than max_seconds + 60
        never_renewed_too_long=(MAX_SECONDS + 120, None),
    )
    assert take_over(db, settings) == 2
    found = statuses(db, ids)
    assert found["renewed_just_now"] == ("running", "part")
    assert found["queued_a_while"] == ("running", "part")
    assert found["lease_lapsed"] == ("failed", "part")  # the partial answer is kept
    assert found["never_renewed_too_long"] == ("failed", "part")
    assert take_over(db, settings) == 0  # nothing twice


def test_a_renewal_keeps_a_run_alive_and_is_refused_once_it_ended(
    db: Database, settings: Settings
) -> None:
    ids = running(db, alive=(300, LEASE + 5), ended=(300, 1))
    store = MessageStore(db)
    assert store.renew_now({ids["alive"]: None}) == {ids["alive"]}  # renewed just in time
    with db.transaction() as session:
        session.execute(update(Message).where(Message.id == ids["ended"]).values(status="stopped"))
    # Renewed together, in one statement: the one that no longer runs is refused.
    assert store.renew_now({ids["alive"]: None, ids["ended"]: "late"}) == {ids["alive"]}
    assert take_over(db, settings) == 0
    assert statuses(db, ids)["alive"] == ("running", "part")
    assert statuses(db, ids)["ended"] == ("stopped", "part")  # a refused checkpoint is not kept
    # A renewal with a checkpoint stores the answer so far (quotes and all, as given).
    answer = 'part and "more" \\ ünïcode'
    assert store.renew_now({ids["alive"]: answer}) == {ids["alive"]}
    assert statuses(db, ids)["alive"] == ("running", answer)


def test_a_dead_run_ends_with_what_its_log_holds_and_an_error_that_ends_the_log(
    db: Database, settings: Settings
) -> None:
    """Its log is ahead of its last checkpoint (up to a second of tokens): the log wins, so a
    follower assembles exactly the stored answer; the log ends with `run_interrupted`; the
    run's concurrency slot is given back."""
    ids = running(db, dead=(300, LEASE + 5))
    task_id = "task-of-the-dead-run"
    with db.transaction() as session:
        session.execute(update(Message).where(Message.id == ids["dead"]).values(task_id=task_id))
    read: list[Any] = []

    async def before(backends: Any) -> None:
        await backends.eventlog.create(task_id, meta={})
        for piece in ("part", " and", " more"):
            await backends.eventlog.append(task_id, "message", {"answer": piece})
        assert await backends.limiter.acquire(
            f"app-active:{app_id(db, ids['dead'])}", limit=1, ttl=60, holder=task_id
        )

    async def after(backends: Any) -> None:
        read.extend([event async for event in backends.eventlog.follow(task_id)])
        read.append(await backends.limiter.free_in(f"app-active:{app_id(db, ids['dead'])}"))

    async def scenario() -> int:
        backends = build_run_backends(settings)
        try:
            await before(backends)
            taken = await take_over_dead_runs(db, backends, settings)
            await after(backends)
            return taken
        finally:
            await backends.aclose()

    assert asyncio.run(scenario()) == 1
    assert statuses(db, ids)["dead"] == ("failed", "part and more")
    *events, slot_wait = read
    assert [event.event for event in events] == ["message"] * 3 + ["message_replace", "error"]
    assert events[-2].payload["answer"] == "part and more"  # the stored answer, for a follower
    assert events[-1].payload["code"] == "run_interrupted"
    assert events[-1].payload["message_id"] == ids["dead"]
    assert slot_wait == 0.0  # the slot is free again


def app_id(db: Database, message_id: str) -> str:
    with db.sessions() as session:
        return str(session.get(Message, message_id).app_id)  # type: ignore[union-attr]


def test_a_process_that_was_the_only_one_ends_every_run_left_running(
    db: Database, settings: Settings
) -> None:
    ids = running(db, fresh=(1, None), old=(900, 900))
    with db.transaction() as session:
        assert end_interrupted_runs(session) == 2
    assert {status for status, _ in statuses(db, ids).values()} == {"failed"}


def test_a_delivery_claims_a_run_only_when_no_live_executor_holds_it(db: Database) -> None:
    """The Celery task's first statement: a queued run (never renewed) and one whose lease
    lapsed are claimed; one a live executor renewed a moment ago (a redelivery while it
    streams) and one that ended are not."""
    ids = running(db, queued=(5, None), lapsed=(300, LEASE + 5), live=(300, 1), ended=(300, 1))
    with db.transaction() as session:
        session.execute(update(Message).where(Message.id == ids["ended"]).values(status="stopped"))
    store = MessageStore(db)
    claimed = {name: store.claim_now(message_id, LEASE) for name, message_id in ids.items()}
    assert claimed == {"queued": True, "lapsed": True, "live": False, "ended": False}
    # Claimed, a run's lease is live: a second delivery of it is refused.
    assert store.claim_now(ids["queued"], LEASE) is False


class Answer:
    """What a run produced so far, as its `Execution.checkpoint` reports it."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self._checkpointed = 0

    def checkpoint(self) -> str | None:
        if len(self.pieces) == self._checkpointed:
            return None
        self._checkpointed = len(self.pieces)
        return "".join(self.pieces)


def message_run(message_id: str) -> RunSpec:
    body = SimpleNamespace(message_id=message_id)
    return RunSpec(f"task-{message_id}", "chat", "app", "tenant", "owner", 0, body)


def test_the_runs_of_one_loop_renew_their_leases_together(db: Database, settings: Settings) -> None:
    """Five runs held on one loop: one UPDATE per tick renews them all, with the checkpoints
    of those that grew; a run that no longer runs has its lease lost within a tick; a run
    whose rows are not committed yet (an early start) is not written."""
    ids = running(db, **{f"run{n}": (300, LEASE + 5) for n in range(5)}, early=(300, LEASE + 5))
    store = MessageStore(db)
    updates: list[str] = []

    def count(_c: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE MESSAGES"):
            updates.append(statement)

    async def scenario() -> None:
        keeper = LeaseKeeper()
        answers = {name: Answer() for name in ids}
        with contextlib.ExitStack() as held:
            leases = {
                name: held.enter_context(
                    keeper.holding(
                        message_run(ids[name]),
                        store,
                        cast(Execution, answers[name]),
                        every=0.2,
                        renew_after=0.3,
                        ready=(lambda: False) if name == "early" else None,
                    )
                )
                for name in ids
            }
            answers["run0"].pieces.append("part, then more")
            answers["run1"].pieces.append('"quoted" \\ ünïcode')
            answers["early"].pieces.append("not yet")
            await asyncio.sleep(0.5)  # two ticks
            assert 1 <= len(updates) <= 2, updates  # not one per run
            with db.transaction() as session:
                session.execute(
                    update(Message).where(Message.id == ids["run4"]).values(status="stopped")
                )
            await asyncio.wait_for(asyncio.shield(leases["run4"].lost), timeout=2)
            assert not any(leases[name].lost.done() for name in ids if name != "run4")

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        asyncio.run(scenario())
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    found = statuses(db, ids)
    assert found["run0"] == ("running", "part, then more")
    assert found["run1"] == ("running", '"quoted" \\ ünïcode')
    assert found["run2"] == ("running", "part")  # renewed, its answer kept
    assert found["run4"] == ("stopped", "part")
    assert found["early"] == ("running", "part")
    # Renewed, so not taken over; the early one was never written: its lease lapsed.
    assert take_over(db, settings) == 1
    assert statuses(db, ids)["early"][0] == "failed"
