"""Bringing the database schema to the code's revision at start."""

from __future__ import annotations

import logging

from alembic.runtime.migration import MigrationContext

from conduit.db.migrations import current_head, downgrade, upgrade
from conduit.infra.db import Database
from conduit.infra.settings import SettingsError

logger = logging.getLogger(__name__)


def schema_revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def prepare_schema(db: Database) -> None:
    """SQLite (embedded): migrate to head. PostgreSQL: refuse to start unless at head, since
    several processes may start at once; `conduit migrate` is the explicit step there."""
    head = current_head()
    found = schema_revision(db)
    if found == head:
        return
    if db.dialect == "sqlite":
        logger.info("migrating the embedded database from %s to %s", found, head)
        migrate(db, "head")
        return
    raise SettingsError(
        f"CONDUIT_DATABASE_URL: the database is at revision {found}, the code needs {head}; "
        "run `conduit migrate`"
    )


def migrate(db: Database, revision: str, *, down: bool = False) -> None:
    """Migrate `db` up (or `down`) to `revision` on a connection of its own engine (SQLite's
    write lock and pragmas apply), committed at the end."""
    url = db.engine.url.render_as_string(hide_password=False)
    with db.engine.connect() as connection:
        if down:
            downgrade(url, revision, connection=connection)
        else:
            upgrade(url, revision, connection=connection)
        connection.commit()
