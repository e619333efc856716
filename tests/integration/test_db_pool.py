"""The PostgreSQL pool: a connection idle for a while is pinged before use, so one the server
dropped meanwhile is replaced instead of failing the transaction; a connection in use moments
ago is not pinged (no round trip more per transaction)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from conduit.infra import db as db_module
from conduit.infra.db import Database, build_engine


def backend_pid(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_dropped_idle_connection_is_replaced_and_a_busy_one_not_pinged(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite has no server to drop connections")
    pings: list[Any] = []
    ping = db.engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return ping(dbapi_connection)

    monkeypatch.setattr(db.engine.dialect, "do_ping", counted)
    db.engine.dispose()  # one pooled connection from here on
    first = backend_pid(db)
    assert backend_pid(db) == first
    assert pings == []  # in use moments ago: no ping

    # The server drops it (as a restart or a failover would) while it sits in the pool.
    outside = build_engine(db.engine.url.render_as_string(hide_password=False), null_pool=True)
    try:
        with outside.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            other.commit()
    finally:
        outside.dispose()
    monkeypatch.setattr(db_module, "IDLE_PING_SECONDS", 0.0)  # every checkout counts as idle
    replaced = backend_pid(db)  # no error: the ping found it dead, the pool took another
    assert replaced != first
    assert len(pings) == 1
