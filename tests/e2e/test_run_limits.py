"""A run's time limit and its lease, on a real server.

`CONDUIT_RUNS_MAX_SECONDS` ends the live run itself: its client gets the partial answer and an
`error` event saying why, and the partial answer is stored (it used to feed only the reaper,
which then marked the row `failed` under a run still streaming, whose final write was refused).
And the reaper ends only runs whose executor is gone: a live run renews its lease, so a reaper
pass in the middle of it changes nothing.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from conduit.core.runs.backends import build_run_backends
from conduit.db.models import utcnow
from conduit.infra.db import Database, build_engine
from conduit.infra.settings import load_settings
from conduit.services.runs import take_over_dead_runs
from tests import support
from tests.e2e.conftest import ServiceApp
from tests.e2e.sse import answer_of, frames

MAX_SECONDS = 3  # the live run of TestLease takes ~1.8 s: room for a loaded machine
LEASE_SECONDS = 1
STACK_ENV = {
    "CONDUIT_RUNS_MAX_SECONDS": str(MAX_SECONDS),
    "CONDUIT_RUNS_LEASE_SECONDS": str(LEASE_SECONDS),
}
# 80 words, 60 ms apart: about 5 s, well past the limit.
LONG_ANSWER = " ".join(f"word{n}" for n in range(80))


def stream_chat(app: ServiceApp, query: str = "Tell me a long story") -> tuple[list[Any], float]:
    body = {
        "inputs": {},
        "query": query,
        "user": "alice",
        "response_mode": "streaming",
        "auto_generate_name": False,
    }
    began = time.monotonic()
    with app.client.stream("POST", "/chat-messages", json=body) as response:
        assert response.status_code == 200, response.read()
        items = [f for f in frames(response) if f.event != "ping"]
    return items, time.monotonic() - began


def stored(app: ServiceApp, message_id: str) -> tuple[str, str, str | None]:
    rows = app.stack.sql("SELECT status, answer, error FROM messages WHERE id = :id", id=message_id)
    assert len(rows) == 1
    status, answer, error = rows[0]
    return str(status), str(answer), None if error is None else str(error)


class TestTimeLimit:
    def test_a_run_past_its_limit_ends_with_its_partial_answer_stored(
        self, chat_app: ServiceApp, upstream: Any
    ) -> None:
        upstream.control(answer=LONG_ANSWER, pace_ms=60.0)
        items, took = stream_chat(chat_app)
        assert items[-1].event == "error", [f.event for f in items[-3:]]
        assert items[-1].data["code"] == "run_time_limit_exceeded"
        assert f"{MAX_SECONDS} seconds" in items[-1].data["message"]
        assert MAX_SECONDS <= took < MAX_SECONDS + 2.5
        streamed = answer_of(items)
        assert streamed and streamed != LONG_ANSWER  # cut short, not empty
        status, answer, error = stored(chat_app, items[0].data["message_id"])
        assert (status, answer) == ("failed", streamed)
        assert error is not None and "time limit" in error
        # The model call was closed, not read to its end.
        stats = upstream.wait_for_stats(lambda s: s["in_flight"] == 0, 5)
        assert stats["disconnects"] >= 1

    def test_a_run_within_its_limit_is_not_touched(
        self, chat_app: ServiceApp, upstream: Any
    ) -> None:
        upstream.control(answer="short and sweet", pace_ms=20.0)
        items, _ = stream_chat(chat_app)
        assert items[-1].event == "message_end"
        assert stored(chat_app, items[0].data["message_id"])[:2] == (
            "succeeded",
            "short and sweet",
        )


class TestLease:
    def test_the_reaper_leaves_a_live_run_alone_and_ends_a_dead_one(
        self,
        chat_app: ServiceApp,
        upstream: Any,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
    ) -> None:
        """In flight: one live run streaming for ~1.8 s (inside the 3 s limit) while a reaper
        with a 1 s lease (renewed every 0.25 s) passes three times, and one run whose executor is gone (its row
        `running`, last renewed 5 s ago). The live one ends `succeeded` with its whole
        answer; only the dead one is ended."""
        for name in list(os.environ):
            if name.startswith("CONDUIT_") and not name.startswith("CONDUIT_TEST_"):
                monkeypatch.delenv(name)
        monkeypatch.setenv("CONDUIT_DATA_DIR", str(tmp_path / ".conduit"))
        monkeypatch.setenv("CONDUIT_RUNS_MAX_SECONDS", str(MAX_SECONDS))
        monkeypatch.setenv("CONDUIT_RUNS_LEASE_SECONDS", str(LEASE_SECONDS))
        settings = load_settings()
        answer = " ".join(f"w{n}" for n in range(30))
        upstream.control(answer=answer, pace_ms=60.0)

        # A run whose executor died: created a minute ago, last renewed 5 s ago.
        done = stream_chat(chat_app, "a first question")[0]
        dead_id = done[0].data["message_id"]
        chat_app.stack.sql(
            "UPDATE messages SET status = 'running', created_at = :created, renewed_at = :renewed"
            " WHERE id = :id",
            created=utcnow().replace(microsecond=0) - _seconds(60),
            renewed=utcnow() - _seconds(5),
            id=dead_id,
        )

        database = Database(build_engine(chat_app.stack.database_url, null_pool=True))
        ended: list[int] = []
        renewed: list[tuple[object, ...]] = []
        try:
            import threading

            def reap_while_streaming() -> None:
                for _ in range(3):
                    time.sleep(0.6)
                    ended.append(asyncio.run(take_over(database, settings)))
                    # The live run has renewed its lease (its row says so) by now.
                    renewed.extend(
                        chat_app.stack.sql(
                            "SELECT id FROM messages WHERE status = 'running'"
                            " AND renewed_at IS NOT NULL AND id != :dead",
                            dead=dead_id,
                        )
                    )

            reaper = threading.Thread(target=reap_while_streaming)
            reaper.start()
            items, _ = stream_chat(chat_app, "a second question")
            reaper.join()
        finally:
            database.dispose()
        assert items[-1].event == "message_end"
        assert stored(chat_app, items[0].data["message_id"])[:2] == ("succeeded", answer)
        # Ended once: by this takeover, or (distributed) by the server's own takeover loop.
        assert sum(ended) <= 1
        assert {row[0] for row in renewed} == {items[0].data["message_id"]}
        status, _, error = stored(chat_app, dead_id)
        assert status == "failed" and error is not None and "interrupted" in error


async def take_over(database: Database, settings: Any) -> int:
    backends = build_run_backends(settings)
    try:
        return await take_over_dead_runs(database, backends, settings)
    finally:
        await backends.aclose()


def _seconds(n: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=n)


__all__ = ["STACK_ENV", "TestLease", "TestTimeLimit", "support"]
