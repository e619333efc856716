"""The one Alembic tree for SQLite and PostgreSQL; `upgrade()` / `downgrade()` drive it."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

HERE = Path(__file__).parent


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head", *, connection: Connection | None = None) -> None:
    """Migrate the database at `url` up to `revision`, on `connection` when given (the caller
    commits), else on a connection of its own."""
    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def downgrade(url: str, revision: str, *, connection: Connection | None = None) -> None:
    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


def current_head() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def index_table(name: str | None, type_: str, _parent: object) -> bool:
    """Alembic's `include_name`: leave out the search index tables (`rag_…`, and FTS5's
    shadow tables of them), which are dialect-specific DDL of their own migration, not models."""
    return not (type_ == "table" and (name or "").startswith("rag_"))
