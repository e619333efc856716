"""The database engine, sessions, and the unit of work's after-commit buffer.

One use case, one transaction: services never commit; the caller (request dependency, task,
CLI) commits once. Side effects registered with `after_commit()` run only after that commit
succeeds and are dropped on rollback.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, NullPool

logger = logging.getLogger(__name__)

_AFTER_COMMIT = "conduit_after_commit"


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once the session's outermost transaction commits; drop it on rollback
    (also when only the savepoint it was registered in rolls back)."""
    pending = session.info.setdefault(_AFTER_COMMIT, [])
    pending.append((session.get_nested_transaction(), callback))


def _within(transaction: SessionTransaction | None, ancestor: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False


@event.listens_for(Session, "after_commit")
def _release_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released; the real commit is still to come
    pending: list[tuple[Any, Callable[[], None]]] = session.info.pop(_AFTER_COMMIT, [])
    for _, callback in pending:
        try:
            callback()
        except Exception:
            # One failing side effect must not break the request or the others.
            logger.exception("after-commit side effect failed: %r", callback)


@event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    pending = session.info.get(_AFTER_COMMIT)
    if not pending:
        return
    if previous_transaction.nested:
        session.info[_AFTER_COMMIT] = [
            (owner, callback)
            for owner, callback in pending
            if not _within(owner, previous_transaction)
        ]
    else:
        session.info.pop(_AFTER_COMMIT, None)


@event.listens_for(Session, "after_transaction_end")
def _drop_uncommitted(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction ended without `after_commit` taking the buffer: it never committed.
    if transaction.parent is None and not transaction.nested:
        session.info.pop(_AFTER_COMMIT, None)


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()


def build_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 20,
    connect_timeout: float = 3.0,
    echo: bool = False,
    null_pool: bool = False,
) -> Engine:
    """An engine for SQLite (WAL, foreign keys on) or PostgreSQL (psycopg 3, pre-ping)."""
    parsed = make_url(url)
    pooling: dict[str, Any] = (
        {"poolclass": NullPool}
        if null_pool
        else {"pool_size": pool_size, "max_overflow": max_overflow}
    )
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            **pooling,
            connect_args={"check_same_thread": False, "timeout": 15},
        )
        event.listen(engine, "connect", _sqlite_pragmas)

        # pysqlite defers BEGIN until the first write, so two transactions that read and then
        # write fail with SQLITE_BUSY instead of waiting. BEGIN IMMEDIATE takes the write lock
        # up front: writers queue on busy_timeout; WAL readers outside a transaction still run.
        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        return engine
    return create_engine(
        url,
        echo=echo,
        **pooling,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": max(1, int(connect_timeout))},
    )


class Database:
    """Owns the engine and hands out sessions; built once per process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    def on_outbox_write(self, notify: Callable[[], None]) -> None:
        """Every session of this database calls `notify` after committing an outbox row."""
        self.sessions.configure(info={"conduit_outbox_notify": notify})

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits on success and rolls back on error."""
        with self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
