"""The Alembic tree on the mode's dialect (SQLite, or a fresh PostgreSQL database in the
distributed mode): it goes up and down cleanly, and after `upgrade head` the database is exactly
what the models describe, so models and migrations stay in lockstep."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from conduit.db.migrations import (
    alembic_config,
    current_head,
    downgrade,
    index_table,
    upgrade,
)
from conduit.db.models import AppMode, Base
from conduit.infra.db import build_engine

MODEL_TABLES = set(Base.metadata.tables)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = build_engine(database_url, null_pool=True)
    yield engine
    engine.dispose()


def tables(engine: Engine) -> set[str]:
    """The model tables (not the search index's `rag_…` ones: see `index_tables`)."""
    return {name for name in inspect(engine).get_table_names() if not name.startswith("rag_")}


def index_tables(engine: Engine) -> set[str]:
    return {name for name in inspect(engine).get_table_names() if name.startswith("rag_")}


def revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def schema_differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_name": index_table}
        )
        return list(compare_metadata(context, Base.metadata))


def test_models_define_tables() -> None:
    assert {"accounts", "tenants", "apps", "outbox"} <= MODEL_TABLES


def test_upgrade_downgrade_and_upgrade_again(database_url: str, engine: Engine) -> None:
    upgrade(database_url)
    assert tables(engine) == MODEL_TABLES | {"alembic_version"}
    assert revision(engine) == current_head()

    assert "rag_keywords" in index_tables(engine)
    downgrade(database_url, "base")
    assert tables(engine) == {"alembic_version"}
    assert index_tables(engine) == set()
    assert revision(engine) is None

    upgrade(database_url)
    assert tables(engine) == MODEL_TABLES | {"alembic_version"}
    assert revision(engine) == current_head()


def test_upgrade_to_head_twice_is_harmless(database_url: str, engine: Engine) -> None:
    upgrade(database_url)
    upgrade(database_url)
    assert revision(engine) == current_head()


def test_every_revision_goes_up_and_down_one_step(database_url: str, engine: Engine) -> None:
    script = ScriptDirectory.from_config(alembic_config(database_url))
    revisions = list(reversed(list(script.walk_revisions())))  # oldest first
    assert revisions, "the tree has no revision"
    for step in revisions:
        upgrade(database_url, step.revision)
        assert revision(engine) == step.revision
        downgrade(database_url, step.down_revision or "base")
        assert revision(engine) == step.down_revision
        upgrade(database_url, step.revision)
    assert revision(engine) == current_head()


def test_tree_has_a_single_head(database_url: str) -> None:
    script = ScriptDirectory.from_config(alembic_config(database_url))
    assert len(script.get_heads()) == 1


def test_migrated_schema_matches_the_models(database_url: str, engine: Engine) -> None:
    upgrade(database_url)
    differences = schema_differences(engine)
    assert differences == [], "models and migrations differ; add a migration:\n" + "\n".join(
        map(repr, differences)
    )


def test_comparison_notices_a_schema_the_models_do_not_match(engine: Engine) -> None:
    """The lockstep check is not vacuous: on an empty database it reports every model table."""
    added = {
        diff[1].name
        for diff in schema_differences(engine)
        if isinstance(diff, tuple) and diff[0] == "add_table"
    }
    assert added == MODEL_TABLES


def test_0004_gives_each_completion_message_a_conversation_of_its_own(
    database_url: str, engine: Engine
) -> None:
    """Messages written before 0004 (a completion app's, with no conversation) each get one,
    holding their inputs, counted as one turn when finished; a chat message keeps its own."""
    upgrade(database_url, "0003")
    table = Base.metadata.tables
    with engine.begin() as conn:
        conn.execute(table["tenants"].insert().values(id="t", name="T"))
        conn.execute(
            table["apps"]
            .insert()
            .values(id="completion-app", tenant_id="t", name="Poems", mode=AppMode.COMPLETION)
        )
        for message_id, status in (("m-done", "succeeded"), ("m-running", "running")):
            conn.execute(
                table["messages"]
                .insert()
                .values(
                    id=message_id,
                    app_id="completion-app",
                    conversation_id=None,
                    inputs={"topic": "tea"},
                    query="q",
                    status=status,
                )
            )
    upgrade(database_url, "0004")
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT m.id, m.conversation_id, c.mode, c.app_id, c.dialogue_count, c.inputs"
                " FROM messages m JOIN conversations c ON c.id = m.conversation_id ORDER BY m.id"
            )
        ).all()
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        ("m-done", "m-done", "completion", "completion-app", 1),
        ("m-running", "m-running", "completion", "completion-app", 0),
    ]
    for row in rows:
        inputs = json.loads(row[5]) if isinstance(row[5], str) else row[5]
        assert inputs == {"topic": "tea"}
    downgrade(database_url, "0003")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM conversations")).scalar() == 0
        assert (
            conn.execute(
                text("SELECT count(*) FROM messages WHERE conversation_id IS NULL")
            ).scalar()
            == 2
        )


def test_0005_allows_one_message_per_app_end_user_and_idempotency_key(
    database_url: str, engine: Engine
) -> None:
    """Messages written before 0005 have no key; after it, a second message of the same app
    and end user under the same key is refused, while unkeyed messages, another end user or
    another key are not."""
    upgrade(database_url, "0004")
    table = Base.metadata.tables
    with engine.begin() as conn:
        conn.execute(table["tenants"].insert().values(id="t", name="T"))
        conn.execute(
            table["apps"].insert().values(id="a", tenant_id="t", name="Chat", mode=AppMode.CHAT)
        )
        conn.execute(
            text(
                "INSERT INTO messages (id, created_at, updated_at, app_id, end_user_id, inputs,"
                " query, answer, status, from_source, message_tokens, answer_tokens, total_price,"
                " currency, provider_response_latency, message_metadata)"
                " VALUES ('old', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 'a', 'u1', '{}', 'q', '',"
                " 'succeeded', 'api', 0, 0, 0, 'USD', 0, '{}')"
            )
        )
    upgrade(database_url, "0005")
    messages = table["messages"]

    def add(message_id: str, end_user_id: str, key: str | None) -> None:
        with engine.begin() as conn:
            conn.execute(
                messages.insert().values(
                    id=message_id, app_id="a", end_user_id=end_user_id, idempotency_key=key,
                    request_hash=None if key is None else "0" * 64,
                )
            )  # fmt: skip

    with engine.connect() as conn:
        assert conn.execute(
            text("SELECT idempotency_key, request_hash FROM messages WHERE id = 'old'")
        ).all() == [(None, None)]
    add("m1", "u1", "k")
    add("m2", "u1", None)
    add("m3", "u1", None)
    add("m4", "u2", "k")
    add("m5", "u1", "k2")
    with pytest.raises(IntegrityError):
        add("m6", "u1", "k")
    downgrade(database_url, "0004")
    columns = {column["name"] for column in inspect(engine).get_columns("messages")}
    assert not {"idempotency_key", "request_hash"} & columns
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM messages")).scalar() == 6
