"""The SQLite write lock: writers of one process queue in order instead of SQLite's sleeps."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from conduit.infra.db import Database, WriteLock, build_engine


class TestWriteLock:
    def test_holders_are_served_in_arrival_order(self) -> None:
        lock = WriteLock(timeout=5)
        first = object()
        lock.acquire(first)
        order: list[int] = []
        threads = []
        for number in range(5):

            def wait(n: int = number) -> None:
                holder = object()
                lock.acquire(holder)
                order.append(n)
                lock.release(holder)

            thread = threading.Thread(target=wait)
            thread.start()
            threads.append(thread)
            time.sleep(0.02)  # each thread queues before the next one starts
        lock.release(first)
        for thread in threads:
            thread.join(5)
        assert order == [0, 1, 2, 3, 4]

    def test_a_wait_past_the_timeout_is_database_is_locked(self) -> None:
        lock = WriteLock(timeout=0.1)
        holder = object()
        lock.acquire(holder)
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            lock.acquire(object())
        lock.release(holder)
        later = object()
        lock.acquire(later)  # the timed-out waiter left no trace in the queue
        lock.release(later)

    def test_only_the_holder_releases(self) -> None:
        lock = WriteLock(timeout=0.1)
        holder = object()
        lock.acquire(holder)
        lock.release(object())  # e.g. a rollback on a connection that never began
        with pytest.raises(sqlite3.OperationalError):
            lock.acquire(object())
        lock.release(holder)


def test_concurrent_writers_all_commit_and_the_lock_is_always_given_back(tmp_path: Path) -> None:
    db = Database(build_engine(f"sqlite:///{tmp_path / 'lock.db'}", pool_size=8))
    with db.transaction() as session:
        session.execute(text("CREATE TABLE counter (n INTEGER)"))
        session.execute(text("INSERT INTO counter VALUES (0)"))
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for index in range(50):
                if index % 10 == 0:
                    try:  # a failing transaction rolls back and gives the lock back too
                        with db.transaction() as session:
                            session.execute(text("UPDATE counter SET n = n + 1000"))
                            raise RuntimeError("boom")
                    except RuntimeError:
                        pass
                with db.transaction() as session:
                    session.execute(text("UPDATE counter SET n = n + 1"))
                with db.sessions() as session:  # a read that is only closed, never committed
                    session.execute(text("SELECT n FROM counter")).scalar_one()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with db.sessions() as session:
        assert session.execute(text("SELECT n FROM counter")).scalar_one() == 8 * 50
    db.dispose()
