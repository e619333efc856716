"""The database engine, sessions, and the unit of work's after-commit buffer.

One use case, one transaction: services never commit; the caller (request dependency, task,
CLI) commits once. Side effects registered with `after_commit()` run only after that commit
succeeds and are dropped on rollback.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
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


class WriteLock:
    """The SQLite write lock, taken in this process before `BEGIN IMMEDIATE` asks SQLite for it.

    SQLite's own wait for a busy database sleeps in steps of up to 100 ms, so a queue of
    writers there turns milliseconds of work into seconds of latency. Connections of one
    process queue here instead, first come first served, and the lock passes straight to the
    next one on commit or rollback. SQLite's busy timeout still covers other processes (e.g. a
    `conduit migrate`). The holder is a connection, not a thread: a transaction may begin on
    one thread and end on another. A second transaction opened while one is held waits (and
    fails after the timeout with "database is locked"), as it would in SQLite itself.
    """

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._mutex = threading.Lock()
        self._waiters: deque[tuple[object, threading.Lock]] = deque()
        self._holder: object | None = None

    def acquire(self, holder: object) -> None:
        with self._mutex:
            if self._holder is None and not self._waiters:
                self._holder = holder
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append((holder, turn))
        if turn.acquire(timeout=self._timeout):
            return  # release() made us the holder
        with self._mutex:
            if (holder, turn) in self._waiters:
                self._waiters.remove((holder, turn))
                raise sqlite3.OperationalError("database is locked")
        # Handed over between the timeout and the check above: the lock is ours after all.

    def release(self, holder: object) -> None:
        with self._mutex:
            if self._holder is not holder:
                return
            if self._waiters:
                self._holder, turn = self._waiters.popleft()
                turn.release()
            else:
                self._holder = None


class _LockingConnection(sqlite3.Connection):
    """A sqlite3 connection that gives the process's `WriteLock` back when its transaction
    ends (the lock is taken by the engine's `begin` hook)."""

    write_lock: WriteLock | None = None
    holds_lock = False

    def take_write_lock(self) -> None:
        if self.write_lock is not None and not self.holds_lock:
            self.write_lock.acquire(self)
            self.holds_lock = True

    def give_back_write_lock(self) -> None:
        if self.holds_lock and self.write_lock is not None:
            self.holds_lock = False
            self.write_lock.release(self)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.give_back_write_lock()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.give_back_write_lock()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.give_back_write_lock()


_write_locks: dict[str, WriteLock] = {}
_write_locks_guard = threading.Lock()


def sqlite_write_lock(path: str, timeout: float = 15.0) -> WriteLock:
    """The one write lock of this process for the SQLite file at `path`."""
    key = str(Path(path).resolve()) if path and path != ":memory:" else f"memory:{path}"
    with _write_locks_guard:
        return _write_locks.setdefault(key, WriteLock(timeout))


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()


def _json_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


# JSON columns (inputs, metadata, …) through orjson: the standard library's encoder ran twice
# per run (the message's inputs at the start, its metadata at the finish) in pure Python.
def _json_value(stored: Any) -> Any:
    """A JSON column's value as read: SQLite hands a JSON number back as a number (the
    column's numeric affinity converted the text `3`), which is the value already."""
    if isinstance(stored, int | float):
        return stored
    return orjson.loads(stored)


_JSON_CODEC: dict[str, Any] = {"json_serializer": _json_text, "json_deserializer": _json_value}


def build_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 20,
    connect_timeout: float = 3.0,
    echo: bool = False,
    null_pool: bool = False,
) -> Engine:
    """An engine for SQLite (WAL, foreign keys on) or PostgreSQL (psycopg 3, idle connections
    pinged before use)."""
    parsed = make_url(url)
    pooling: dict[str, Any] = (
        {"poolclass": NullPool}
        if null_pool
        else {"pool_size": pool_size, "max_overflow": max_overflow}
    )
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        write_lock = sqlite_write_lock(parsed.database or ":memory:")
        engine = create_engine(
            url,
            echo=echo,
            **pooling,
            **_JSON_CODEC,
            connect_args={
                "check_same_thread": False,
                "timeout": 15,
                "factory": _LockingConnection,
            },
        )
        event.listen(engine, "connect", _sqlite_pragmas)

        # pysqlite defers BEGIN until the first write, so two transactions that read and then
        # write fail with SQLITE_BUSY instead of waiting. BEGIN IMMEDIATE takes the write lock
        # up front, after this process's `WriteLock` has queued the threads that want it.
        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            dbapi_connection = conn.connection.dbapi_connection
            if conn.get_execution_options().get(READS_ONLY):
                # A reader (`Database.reads`): a deferred transaction, one snapshot of the WAL
                # database, never the write lock.
                dbapi_connection.execute("BEGIN")
                return
            if isinstance(dbapi_connection, _LockingConnection):
                dbapi_connection.take_write_lock()
            try:
                # On the DBAPI connection itself: SQLAlchemy's exec_driver_sql would build an
                # execution context and a result for this statement in every transaction.
                conn.connection.dbapi_connection.execute("BEGIN IMMEDIATE")
            except BaseException:
                if isinstance(dbapi_connection, _LockingConnection):
                    dbapi_connection.give_back_write_lock()
                raise

        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            if isinstance(dbapi_connection, _LockingConnection):
                dbapi_connection.write_lock = write_lock

        return engine
    engine = create_engine(
        url,
        echo=echo,
        **pooling,
        **_JSON_CODEC,
        pool_recycle=1800,
        connect_args={"connect_timeout": max(1, int(connect_timeout))},
    )
    _ping_when_idle(engine)
    return engine


# A pooled connection idle longer than this is pinged before use (a restarted or failed-over
# server, a dropped TCP connection). `pool_pre_ping` would ping on every checkout: a round trip
# more per transaction, on the path of every run's start and finish.
IDLE_PING_SECONDS = 5.0


def _ping_when_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["conduit_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        since = record.info.pop("conduit_idle_since", None)
        if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
            return  # a new connection, or one in use moments ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool drops this connection and checks out another (a new one if need be).
            raise DisconnectionError("the pooled connection no longer answers") from error


@contextmanager
def commit_together(session: Session, *, pipelined: bool = True) -> Iterator[None]:
    """The block's statements and the commit that ends it, sent to PostgreSQL together: one
    round trip in psycopg's pipeline mode instead of one per statement (and one for BEGIN,
    one for COMMIT). For writes whose results nobody reads in the block: a statement's result
    arrives only at the commit, so a query's rows would be empty; an error (a foreign key,
    say) is raised by the commit. On SQLite (no round trips), the block and the commit.

    The session must come from `Database.transaction(pinned=True)`: a session's commit
    otherwise gives its connection back to the pool at once, to another thread, while this
    block still has the connection's pipeline open."""
    connection = session.connection()
    if connection.dialect.name != "postgresql" or not pipelined:
        yield
        session.commit()
        return
    if not isinstance(session.get_bind(), Connection):
        raise RuntimeError("commit_together needs a session of Database.transaction(pinned=True)")
    driver = connection.connection.driver_connection
    assert driver is not None  # a checked-out connection
    with driver.pipeline():
        yield
        session.commit()


def pipeline_aborted(error: BaseException) -> bool:
    """Whether `error` is psycopg's report of a statement that followed a failed one in a
    `commit_together` pipeline: the failed statement's own error (a unique or foreign key
    violation, say) may reach the caller second or not at all, depending on when psycopg read
    the results. The caller runs its writes again unpipelined to learn the real one (the
    transaction was rolled back, nothing was written)."""
    import psycopg

    return isinstance(getattr(error, "orig", None), psycopg.errors.PipelineAborted)


# The execution option of `Database.reads`'s connections.
READS_ONLY = "conduit_reads_only"


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
    def transaction(self, *, pinned: bool = False) -> Iterator[Session]:
        """A session whose work commits on success and rolls back on error. `pinned`: on a
        connection of its own, which goes back to the pool only when the block ends, not at
        the commit (what `commit_together` needs)."""
        with contextlib.ExitStack() as stack:
            if pinned:
                connection = stack.enter_context(self.engine.connect())
                session = stack.enter_context(self.sessions(bind=connection))
            else:
                session = stack.enter_context(self.sessions())
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def reads(self) -> Iterator[Session]:
        """A session for work that only reads and must not wait behind writers: on SQLite a
        deferred transaction (one snapshot of the WAL database, without the write lock that
        every `transaction` takes there; it must not write), on PostgreSQL a plain one; rolled
        back at the end either way."""
        with self.engine.connect() as connection:
            if self.dialect == "sqlite":
                connection = connection.execution_options(**{READS_ONLY: True})
            with self.sessions(bind=connection) as session:
                try:
                    yield session
                finally:
                    session.rollback()

    @contextmanager
    def statements(self) -> Iterator[Connection]:
        """A Core connection whose statements commit: on PostgreSQL each by itself, as it runs
        (autocommit: no BEGIN and no COMMIT, two round trips fewer), so for work that is one
        statement or whose statements need not commit together; on SQLite (no round trips to
        save) together, in a transaction that commits when the block ends."""
        if self.dialect != "postgresql":
            with self.engine.begin() as connection:
                yield connection
            return
        # psycopg's autocommit is a flag of the client (no query); the pool sets the default
        # isolation back when the connection returns.
        with self.engine.connect() as connection:
            yield connection.execution_options(isolation_level="AUTOCOMMIT")

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
