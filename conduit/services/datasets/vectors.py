"""The vector index of segments: one interface (`VectorIndex`), two backends, one conformance
suite (`tests/contracts/test_vector_index.py`).

- `MatrixIndex` (any database; the embedded mode's): a segment's vector is the embedding
  cache's row of its text. A process loads a dataset's vectors once into a float32 matrix and
  keeps it while the dataset's documents and segments are unchanged (their latest `updated_at`,
  two index probes per search); the scan is exact. Measured faster than sqlite-vec's own scan
  (ADR 0014), and nothing to keep in step: `add` has nothing to write.
- `PgVectorIndex` (PostgreSQL with pgvector 0.8): a table per dimension, `rag_vectors_{dim}`
  (segment id → dataset id, vector), created on first use with an HNSW cosine index; rows are
  written in the transaction that completes their segments and go with them (a foreign key,
  ON DELETE CASCADE). Searches use the iterative scan, so a filtered search still finds k.

Either returns candidates: ids of the dataset's indexed segments with their cosine
similarity, best first; whether each is searchable now (enabled, its document completed and
enabled) is the caller's filter (`retrieval.py`).

An index holds one `Unit`: segments (a `text_model` document's), or, from `children()`, the
child chunks of parent-child documents (`hierarchical_model`), whose parents are not embedded:
the same backend over `child_chunks` (pgvector: `rag_child_vectors_{dim}`), returning child
chunk ids that the caller maps to their segments.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from sqlalchemy import and_, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from conduit.core.rag.embed.local import DIMENSION
from conduit.core.rag.retrieve import nearest
from conduit.db.models import (
    CachedEmbedding,
    ChildChunk,
    Dataset,
    Document,
    DocumentSegment,
    IndexingStatus,
    IndexingTechnique,
)
from conduit.infra.db import Database

logger = logging.getLogger(__name__)

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Unit:
    """What an index's vectors belong to: its rows' table (`name`, and its ORM class) and,
    for pgvector, its tables' prefix and key column."""

    name: str
    row: type[DocumentSegment] | type[ChildChunk]
    prefix: str
    key: str


SEGMENTS = Unit("document_segments", DocumentSegment, "rag_vectors", "segment_id")
CHILD_CHUNKS = Unit("child_chunks", ChildChunk, "rag_child_vectors", "chunk_id")


class VectorIndex(Protocol):
    name: str
    unit: Unit

    def children(self) -> VectorIndex:
        """The index of child chunks beside this one of segments (same backend)."""

    def prepare(self, dimension: int) -> None:
        """Ready the index for vectors of `dimension` (a model's first vectors): called before
        the transaction that writes them, never inside one that wrote segments."""

    def add(self, session: Session, dataset_id: str, rows: Sequence[tuple[str, Vector]]) -> None:
        """Index (id, vector) pairs of a dataset's segments (or child chunks) in the caller's
        transaction; one indexed again takes its new vector."""

    def search(
        self,
        session: Session,
        dataset_id: str,
        model_key: str,
        vector: Vector,
        limit: int,
        document_ids: Collection[str] | None = None,
    ) -> list[tuple[str, float]]:
        """The `limit` segments of the dataset nearest to `vector` (by `model_key`'s vectors),
        with their cosine similarity, best first; only the segments of `document_ids` when
        given (a metadata filter)."""


def searchable(dataset_id: str) -> Any:
    """The segments a search may return: completed and enabled, of the document's current
    generation, in a completed, enabled, unarchived document."""
    return and_(
        DocumentSegment.dataset_id == dataset_id,
        DocumentSegment.status == "completed",
        DocumentSegment.enabled.is_(True),
        DocumentSegment.generation == Document.index_generation,
        Document.indexing_status == IndexingStatus.COMPLETED,
        Document.enabled.is_(True),
        Document.archived.is_(False),
    )


def is_searchable(segment: DocumentSegment, document: Document, dataset_id: str) -> bool:
    """`searchable` for a segment and its document read by their ids. (The same conditions in
    SQL beside `id IN (…)` let SQLite's planner, without statistics, take the dataset's or the
    document's index instead of the primary key: a scan of the dataset's segments, 15 ms per
    search at 10k segments.)"""
    return (
        segment.dataset_id == dataset_id
        and segment.status == "completed"
        and segment.enabled
        and segment.generation == document.index_generation
        and document.id == segment.document_id
        and document.indexing_status == IndexingStatus.COMPLETED
        and document.enabled
        and not document.archived
    )


@dataclass
class _Loaded:
    signature: tuple[Any, ...]
    ids: list[str]
    matrix: Vector
    documents: npt.NDArray[Any]  # each row's document id


@dataclass
class MatrixIndex:
    """Exact search over per-process matrices of the embedding cache's vectors."""

    name: str = "matrix"
    unit: Unit = SEGMENTS
    _loaded: dict[tuple[str, str], _Loaded] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _children: MatrixIndex | None = None

    def children(self) -> MatrixIndex:
        if self.unit is CHILD_CHUNKS:
            return self
        with self._lock:
            if self._children is None:
                self._children = MatrixIndex(unit=CHILD_CHUNKS)
            return self._children

    def prepare(self, dimension: int) -> None:
        return None  # a matrix of any width is made when loaded

    def add(self, session: Session, dataset_id: str, rows: Sequence[tuple[str, Vector]]) -> None:
        return None  # the vectors are the embedding cache's rows, written with the embedding

    def search(
        self,
        session: Session,
        dataset_id: str,
        model_key: str,
        vector: Vector,
        limit: int,
        document_ids: Collection[str] | None = None,
    ) -> list[tuple[str, float]]:
        loaded = self._vectors(session, dataset_id, model_key)
        if not loaded.ids:
            return []
        if loaded.matrix.shape[1] != vector.shape[0]:
            raise ValueError(
                f"a {vector.shape[0]}-dimension query against "
                f"{loaded.matrix.shape[1]}-dimension vectors"
            )
        if document_ids is None:
            return nearest(loaded.matrix, loaded.ids, vector, top_k=limit)
        rows = np.flatnonzero(np.isin(loaded.documents, list(document_ids)))
        return nearest(loaded.matrix[rows], [loaded.ids[i] for i in rows], vector, top_k=limit)

    def _vectors(self, session: Session, dataset_id: str, model_key: str) -> _Loaded:
        key = (dataset_id, model_key)
        # The dataset's latest change of a document or a segment: two index probes, whatever
        # its size. Any change that can add a searchable vector moves one of them (a segment
        # completed, added, edited or enabled; a document completed, enabled or re-indexed);
        # one that only removes (a delete) may not, and the caller's availability filter drops
        # what the matrix still holds until the next change reloads it.
        signature: tuple[Any, ...] = (
            session.scalar(
                select(func.max(Document.updated_at)).where(Document.dataset_id == dataset_id)
            ),
            session.scalar(
                select(func.max(DocumentSegment.updated_at)).where(
                    DocumentSegment.dataset_id == dataset_id
                )
            ),
        )
        if self.unit is CHILD_CHUNKS:
            signature += (
                session.scalar(
                    select(func.max(ChildChunk.updated_at)).where(
                        ChildChunk.dataset_id == dataset_id
                    )
                ),
            )
        with self._lock:
            found = self._loaded.get(key)
            if found is not None and found.signature == signature:
                return found
        row = self.unit.row
        query = select(row.id, CachedEmbedding.vector, row.document_id)
        if row is ChildChunk:
            query = query.join(DocumentSegment, DocumentSegment.id == ChildChunk.segment_id)
        rows = session.execute(
            query.join(Document, Document.id == DocumentSegment.document_id)
            .join(
                CachedEmbedding,
                and_(
                    CachedEmbedding.model_key == model_key,
                    CachedEmbedding.content_hash == row.content_hash,
                ),
            )
            .where(searchable(dataset_id))
            .order_by(row.id)
        ).all()
        ids = [row[0] for row in rows]
        matrix = (
            np.stack([np.frombuffer(row[1], dtype=np.float32) for row in rows])
            if rows
            else np.zeros((0, 0), dtype=np.float32)
        )
        loaded = _Loaded(signature, ids, matrix, np.array([row[2] for row in rows], dtype=object))
        with self._lock:
            self._loaded[key] = loaded
        return loaded


# Held while the extension or a vector table is created (concurrent CREATE … IF NOT EXISTS can
# still collide in PostgreSQL's catalogs).
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('conduit.rag_vectors'))"


def _literal(vector: Vector) -> str:
    """pgvector's text form of a vector ('[0.1,0.2,…]')."""
    return "[" + ",".join(f"{float(x):.8g}" for x in vector) + "]"


@dataclass
class PgVectorIndex:
    """pgvector tables, one per dimension, each with an HNSW index on cosine distance."""

    db: Database
    ef_search: int = 100
    name: str = "pgvector"
    unit: Unit = SEGMENTS
    _ready: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _children: PgVectorIndex | None = None

    def children(self) -> PgVectorIndex:
        if self.unit is CHILD_CHUNKS:
            return self
        with self._lock:
            if self._children is None:
                self._children = PgVectorIndex(self.db, ef_search=self.ef_search, unit=CHILD_CHUNKS)
            return self._children

    def table(self, dimension: int) -> str:
        """The dimension's table: its name is a constant's and an int's, so it can go into
        SQL text."""
        return f"{self.unit.prefix}_{int(dimension)}"

    def ensure(self, dimension: int) -> str:
        """The dimension's table, created (once per database, under an advisory lock) and
        filled with the vectors of segments indexed before it existed. Call it outside any
        transaction that wrote segments (`build_vector_index` does, for the local model's
        dimension): creating the table's foreign key waits for such a transaction, which
        would wait for this; the lock timeout turns that into an error, not a hang."""
        table = self.table(dimension)
        with self._lock:
            if dimension in self._ready:
                return table
            with self.db.engine.begin() as connection:
                connection.execute(text("SET LOCAL lock_timeout = '10s'"))
                connection.execute(text(_LOCK))
                connection.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
                connection.execute(
                    text(
                        f"CREATE TABLE IF NOT EXISTS {table} ("
                        f"{self.unit.key} varchar(36) PRIMARY KEY "
                        f"REFERENCES {self.unit.name} (id) ON DELETE CASCADE, "
                        "dataset_id varchar(36) NOT NULL, "
                        f"embedding vector({int(dimension)}) NOT NULL)"
                    )
                )
                connection.execute(
                    text(
                        f"CREATE INDEX IF NOT EXISTS {table}_hnsw ON {table} "
                        "USING hnsw (embedding vector_cosine_ops)"
                    )
                )
                connection.execute(
                    text(f"CREATE INDEX IF NOT EXISTS {table}_dataset ON {table} (dataset_id)")
                )
            self._backfill(dimension, table)
            self._ready.add(dimension)
        return table

    def prepare(self, dimension: int) -> None:
        self.ensure(dimension)

    def _backfill(self, dimension: int, table: str) -> None:
        """Vectors of completed segments of high-quality datasets that the table lacks (indexed
        before it existed, or by the other backend), from the embedding cache."""
        row, key = self.unit.row, self.unit.key
        missing = select(row.id, row.dataset_id, CachedEmbedding.vector)
        if row is ChildChunk:
            missing = missing.join(DocumentSegment, DocumentSegment.id == ChildChunk.segment_id)
        missing = (
            missing.join(Dataset, Dataset.id == row.dataset_id)
            .join(CachedEmbedding, CachedEmbedding.content_hash == row.content_hash)
            .where(
                Dataset.indexing_technique == IndexingTechnique.HIGH_QUALITY,
                DocumentSegment.status == "completed",
                CachedEmbedding.dimension == dimension,
                text(
                    f"NOT EXISTS (SELECT 1 FROM {table} v "  # noqa: S608 (constant names)
                    f"WHERE v.{key} = {self.unit.name}.id)"
                ),
            )
        )
        if row is DocumentSegment:
            # A parent-child document's segments are not embedded (their children are).
            missing = missing.join(Document, Document.id == DocumentSegment.document_id).where(
                Document.doc_form != "hierarchical_model"
            )
        added = 0
        with self.db.engine.begin() as connection:
            for batch in connection.execute(missing).partitions(500):
                connection.execute(
                    text(
                        f"INSERT INTO {table} ({key}, dataset_id, embedding) "  # noqa: S608
                        "VALUES (:id, :dataset_id, CAST(:embedding AS vector)) "
                        f"ON CONFLICT ({key}) DO NOTHING"
                    ),
                    [
                        {
                            "id": found[0],
                            "dataset_id": found[1],
                            "embedding": _literal(np.frombuffer(found[2], dtype=np.float32)),
                        }
                        for found in batch
                    ],
                )
                added += len(batch)
        if added:
            logger.info("vector index: %d vectors copied into %s", added, table)

    def add(self, session: Session, dataset_id: str, rows: Sequence[tuple[str, Vector]]) -> None:
        if not rows:
            return
        table, key = self.ensure(int(rows[0][1].shape[0])), self.unit.key
        session.execute(
            text(
                f"INSERT INTO {table} ({key}, dataset_id, embedding) "  # noqa: S608
                "VALUES (:id, :dataset_id, CAST(:embedding AS vector)) "
                f"ON CONFLICT ({key}) DO UPDATE SET embedding = EXCLUDED.embedding"
            ),
            [
                {"id": row_id, "dataset_id": dataset_id, "embedding": _literal(vector)}
                for row_id, vector in rows
            ],
        )

    def search(
        self,
        session: Session,
        dataset_id: str,
        model_key: str,
        vector: Vector,
        limit: int,
        document_ids: Collection[str] | None = None,
    ) -> list[tuple[str, float]]:
        table = self.ensure(int(vector.shape[0]))
        # For this transaction only: how wide the HNSW search is, and that a filtered search
        # goes on scanning until it has `limit` rows of the dataset (relaxed order: the outer
        # ORDER BY puts them back in order).
        session.execute(
            text(
                "SELECT set_config('hnsw.ef_search', :ef, true), "
                "set_config('hnsw.iterative_scan', 'relaxed_order', true)"
            ),
            {"ef": str(max(self.ef_search, limit))},
        )
        params: dict[str, Any] = {"q": _literal(vector), "dataset_id": dataset_id, "limit": limit}
        only, key = "", self.unit.key
        if document_ids is not None:
            only = (
                f" AND {key} IN (SELECT id FROM {self.unit.name} "  # noqa: S608 (constants)
                "WHERE document_id = ANY(:document_ids))"
            )
            params["document_ids"] = list(document_ids)
        rows = session.execute(
            text(
                "WITH found AS MATERIALIZED ("  # noqa: S608 (constant names)
                f"SELECT {key}, embedding <=> CAST(:q AS vector) AS distance FROM {table} "
                f"WHERE dataset_id = :dataset_id{only} ORDER BY distance LIMIT :limit) "
                f"SELECT {key}, 1 - distance FROM found ORDER BY distance, {key}"
            ),
            params,
        ).all()
        return [(str(row[0]), float(row[1])) for row in rows]


def pgvector_available(db: Database) -> bool:
    if db.dialect != "postgresql":
        return False
    with db.engine.connect() as connection:
        return bool(
            connection.execute(
                text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
            ).first()
        )


def build_vector_index(
    db: Database, choice: str, *, ef_search: int = 100, dimensions: Sequence[int] = (DIMENSION,)
) -> VectorIndex:
    """The backend `choice` names ("matrix", "pgvector", or "auto": pgvector on PostgreSQL
    where the extension is available, else the matrix), with the tables of the models'
    `dimensions` ready."""
    if choice == "pgvector" and db.dialect != "postgresql":
        raise ValueError("CONDUIT_RAG_VECTOR_INDEX=pgvector needs a PostgreSQL database")
    if choice == "pgvector" or (choice == "auto" and pgvector_available(db)):
        try:
            with db.engine.begin() as connection:
                # Servers and workers start together: one at a time creates the extension.
                connection.execute(text(_LOCK))
                connection.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        except DBAPIError as error:
            if choice == "pgvector":
                raise
            logger.warning(
                "vector index: pgvector is installed but cannot be enabled in this database "
                "(%s); searching in-process matrices instead",
                str(error.orig).strip(),
            )
            return MatrixIndex()
        index = PgVectorIndex(db, ef_search=ef_search)
        for dimension in dimensions:
            index.ensure(dimension)
            index.children().ensure(dimension)
        return index
    return MatrixIndex()
