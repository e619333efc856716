"""The keyword (full-text) index of segments: FTS5 on SQLite, tsvector + GIN on PostgreSQL
(migration 0010). A segment is added in the transaction that completes it, and removed with
it; a search returns segment ids with a similarity in [0, 1), best first."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import TextClause, bindparam, text
from sqlalchemy.orm import Session

from conduit.core.rag.keywords import fts5_query, normalise_bm25, terms, tsquery


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def add(session: Session, dataset_id: str, segments: Sequence[tuple[str, str]]) -> None:
    """Index (segment id, content) pairs of a dataset."""
    if not segments:
        return
    rows = [{"segment_id": i, "dataset_id": dataset_id, "content": c} for i, c in segments]
    if _postgres(session):
        session.execute(
            text(
                "INSERT INTO rag_keywords (segment_id, dataset_id, tsv) VALUES "
                "(:segment_id, :dataset_id, to_tsvector('simple', :content)) "
                "ON CONFLICT (segment_id) DO NOTHING"
            ),
            rows,
        )
    else:
        session.execute(
            text(
                "INSERT INTO rag_keywords (content, segment_id, dataset_id) "
                "VALUES (:content, :segment_id, :dataset_id)"
            ),
            rows,
        )


_REMOVE_DOCUMENT = text(
    "DELETE FROM rag_keywords WHERE segment_id IN "
    "(SELECT id FROM document_segments WHERE document_id = :document_id)"
)
_REMOVE_GENERATION = text(
    "DELETE FROM rag_keywords WHERE segment_id IN (SELECT id FROM document_segments "
    "WHERE document_id = :document_id AND generation = :generation)"
)


def remove_document(session: Session, document_id: str, generation: int | None = None) -> None:
    """Forget a document's segments (of one generation, or all), before the segments go."""
    if generation is None:
        session.execute(_REMOVE_DOCUMENT, {"document_id": document_id})
    else:
        session.execute(_REMOVE_GENERATION, {"document_id": document_id, "generation": generation})


def remove_segments(session: Session, segment_ids: Sequence[str]) -> None:
    if segment_ids:
        session.execute(
            text("DELETE FROM rag_keywords WHERE segment_id IN :ids").bindparams(
                bindparam("ids", expanding=True)
            ),
            {"ids": list(segment_ids)},
        )


def remove_dataset(session: Session, dataset_id: str) -> None:
    session.execute(
        text("DELETE FROM rag_keywords WHERE dataset_id = :dataset_id"), {"dataset_id": dataset_id}
    )


def search(
    session: Session,
    dataset_id: str,
    query: str,
    limit: int,
    document_ids: Collection[str] | None = None,
) -> list[tuple[str, float]]:
    """The best `limit` matches of `query` in the dataset (only its `document_ids`' segments
    when given), with a similarity in [0, 1)."""
    words = terms(query)
    if not words or (document_ids is not None and not document_ids):
        return []
    only, params = "", {}
    if document_ids is not None:
        only = " AND segment_id IN (SELECT id FROM document_segments WHERE document_id IN :docs)"
        params["docs"] = list(document_ids)
    if _postgres(session):
        statement = text(
            "SELECT segment_id, ts_rank_cd(tsv, q, 32) AS score "  # noqa: S608 (fixed SQL)
            "FROM rag_keywords, to_tsquery('simple', :q) AS q "
            f"WHERE dataset_id = :dataset_id AND tsv @@ q{only} "
            "ORDER BY score DESC, segment_id LIMIT :limit"
        )
        rows = session.execute(
            _expanding(statement, params),
            {"q": tsquery(words), "dataset_id": dataset_id, "limit": limit, **params},
        ).all()
        return [(str(row[0]), float(row[1])) for row in rows]
    statement = text(
        "SELECT segment_id, bm25(rag_keywords) AS score FROM rag_keywords "  # noqa: S608
        f"WHERE rag_keywords MATCH :q AND dataset_id = :dataset_id{only} "
        "ORDER BY score, segment_id LIMIT :limit"
    )
    rows = session.execute(
        _expanding(statement, params),
        {"q": fts5_query(words), "dataset_id": dataset_id, "limit": limit, **params},
    ).all()
    return [(str(row[0]), normalise_bm25(float(row[1]))) for row in rows]


def _expanding(statement: TextClause, params: dict[str, Any]) -> TextClause:
    return (
        statement.bindparams(bindparam("docs", expanding=True)) if "docs" in params else statement
    )
