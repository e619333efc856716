"""End users at run start: get-or-create by (app, user), with the process cache sparing the
query for known ones — never caching a row that only an uncommitted transaction holds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from conduit.db.models import App, EndUser
from conduit.infra.cache import MemoryCache
from conduit.infra.db import Database
from conduit.services.apps import app_cache_key
from conduit.services.end_users import get_or_create_end_user
from tests.support import add_chat_app


def make_app(db: Database) -> App:
    with db.transaction() as session:
        app = add_chat_app(session, "End users")
        session.expunge(app)
    return app


@contextmanager
def counted(db: Database) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def test_a_known_end_user_comes_from_the_cache_without_a_query(db: Database) -> None:
    app, cache = make_app(db), MemoryCache()
    with db.transaction() as session:
        created = get_or_create_end_user(session, app, "alice", cache).id
    with db.transaction() as session, counted(db) as first:
        assert get_or_create_end_user(session, app, "alice", cache).id == created
    assert any("end_users" in s for s in first)  # found by the query, then cached
    with db.transaction() as session, counted(db) as second:
        assert get_or_create_end_user(session, app, "alice", cache).id == created
    assert not any("end_users" in s for s in second)


def test_a_row_of_a_rolled_back_transaction_is_never_cached(db: Database) -> None:
    app, cache = make_app(db), MemoryCache()
    session = db.sessions()
    try:
        lost = get_or_create_end_user(session, app, "carol", cache)
        session.flush()
        session.rollback()
    finally:
        session.close()
    with db.transaction() as session:
        kept = get_or_create_end_user(session, app, "carol", cache)
        assert kept.id != lost.id
    with db.sessions() as session:
        assert session.get(EndUser, kept.id) is not None


def test_the_apps_tag_drops_its_end_users(db: Database) -> None:
    app, cache = make_app(db), MemoryCache()
    with db.transaction() as session:
        get_or_create_end_user(session, app, "dave", cache)
    with db.transaction() as session:
        get_or_create_end_user(session, app, "dave", cache)  # now cached
    cache.invalidate_tags(app_cache_key(app.id))
    with db.transaction() as session, counted(db) as statements:
        get_or_create_end_user(session, app, "dave", cache)
    assert any("end_users" in s for s in statements)
