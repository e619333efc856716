"""Substring filters with SQL LIKE: the caller's text escaped so that a `%`, `_` or `\\` in it
matches itself, not any text (the same pattern on SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, SQLColumnExpression

ESCAPE = "\\"


def escape_like(text: str) -> str:
    """`text` with LIKE's wildcards and the escape character escaped."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def contains(column: SQLColumnExpression[Any], text: str) -> ColumnElement[bool]:
    """`column` holds `text` somewhere, case ignored (ILIKE '%text%')."""
    return column.ilike(f"%{escape_like(text)}%", escape=ESCAPE)
