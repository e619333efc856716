"""The vector index contract (`conduit/services/datasets/vectors.py:VectorIndex`), run against
every backend the mode's database has: the in-process matrices on SQLite and PostgreSQL,
pgvector on PostgreSQL (which CI must have: `scripts/install-pgvector`).

Each case writes real rows (a workspace, datasets, documents, segments, the embedding cache)
and indexes them as the indexer does, in the transaction that writes the segments. The
searches run against both units of each backend: segments, and the child chunks of
parent-child documents (`VectorIndex.children()`)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import numpy as np
import pytest
from sqlalchemy import delete, update

from conduit.db.models import (
    ChildChunk,
    Dataset,
    Document,
    DocumentSegment,
    IndexingStatus,
    IndexingTechnique,
    utcnow,
)
from conduit.infra.db import Database
from conduit.services.accounts import create_admin
from conduit.services.datasets.vectors import (
    MatrixIndex,
    PgVectorIndex,
    Vector,
    VectorIndex,
    pgvector_available,
)
from conduit.services.embeddings import content_hash, store_vectors
from tests import support

MODEL = "test:model"
DIM = 16
RNG = np.random.default_rng(7)


def unit(vector: np.ndarray) -> Vector:
    found: Vector = (vector / np.linalg.norm(vector)).astype(np.float32)
    return found


def random_vectors(n: int, dim: int = DIM) -> list[Vector]:
    return [unit(RNG.normal(size=dim)) for _ in range(n)]


@pytest.fixture(params=["matrix", "pgvector"])
def index(request: pytest.FixtureRequest, db: Database) -> VectorIndex:
    if request.param == "matrix":
        return MatrixIndex()
    if db.dialect != "postgresql":
        pytest.skip("pgvector is a PostgreSQL backend")
    if not pgvector_available(db):
        support.missing("pgvector installed in PostgreSQL (scripts/install-pgvector)")
    index = PgVectorIndex(db)
    for dimension in (DIM, DIM * 2):  # as `build_vector_index` does, before any write
        index.ensure(dimension)
        index.children().ensure(dimension)
    return index


@dataclass
class Corpus:
    """Rows of one workspace: datasets made by `dataset()`, each with one document."""

    db: Database
    index: VectorIndex
    tenant_id: str
    account_id: str
    children: bool = False  # vectors of child chunks (two per parent segment), not segments

    def dataset(self, vectors: list[Vector]) -> tuple[str, str, list[str]]:
        """A dataset with one completed document of one segment per vector, indexed; its id,
        the document's, and the segments' ids in the vectors' order."""
        now = utcnow()
        if vectors:  # as indexing does, before the transaction that writes segments
            self.index.prepare(int(vectors[0].shape[0]))
        with self.db.transaction() as session:
            dataset = Dataset(
                tenant_id=self.tenant_id,
                name=f"Vectors {time.monotonic_ns()}",
                created_by=self.account_id,
                indexing_technique=IndexingTechnique.HIGH_QUALITY,
            )
            session.add(dataset)
            session.flush()
            document = Document(
                tenant_id=self.tenant_id,
                dataset_id=dataset.id,
                position=1,
                batch="b",
                name="doc",
                created_by=self.account_id,
                indexing_status=IndexingStatus.COMPLETED,
            )
            session.add(document)
            session.flush()
            segments = []
            for position, vector in enumerate(vectors, start=1):
                text = f"segment {uuid.uuid4()}"
                segments.append(
                    DocumentSegment(
                        id=str(uuid.uuid4()),
                        tenant_id=self.tenant_id,
                        dataset_id=dataset.id,
                        document_id=document.id,
                        position=position,
                        content=text,
                        word_count=len(text),
                        status="completed",
                        created_by=self.account_id,
                        completed_at=now,
                        content_hash=content_hash(text),
                    )
                )
            session.add_all(segments)
            session.flush()
            rows: list[DocumentSegment] | list[ChildChunk] = segments
            if self.children:
                rows = [
                    child(segments[index // 2], index + 1, self.account_id)
                    for index in range(len(vectors))
                ]
                session.add_all(rows)
                session.flush()
            store_vectors(
                session.connection(),
                MODEL,
                {s.content_hash: v for s, v in zip(rows, vectors, strict=True)},
            )
            self.index.add(
                session, dataset.id, [(s.id, v) for s, v in zip(rows, vectors, strict=True)]
            )
            return dataset.id, document.id, [s.id for s in rows]

    def search(self, dataset_id: str, query: Vector, limit: int = 5) -> list[tuple[str, float]]:
        with self.db.reads() as session:
            return self.index.search(session, dataset_id, MODEL, query, limit)


def child(parent: DocumentSegment, position: int, account_id: str) -> ChildChunk:
    text = f"child {uuid.uuid4()}"
    return ChildChunk(
        id=str(uuid.uuid4()),
        tenant_id=parent.tenant_id,
        dataset_id=parent.dataset_id,
        document_id=parent.document_id,
        segment_id=parent.id,
        position=position,
        content=text,
        word_count=len(text),
        created_by=account_id,
        content_hash=content_hash(text),
    )


def workspace(db: Database) -> tuple[str, str]:
    """A new workspace and its owner: (tenant id, account id)."""
    with db.transaction() as session:
        account, tenant, _ = create_admin(
            session,
            email=f"vectors-{time.monotonic_ns()}@example.com",
            password="correct horse battery",
            workspace="Vectors",
        )
        return tenant.id, account.id


@pytest.fixture
def corpus(db: Database, index: VectorIndex) -> Corpus:
    return Corpus(db, index, *workspace(db))


@pytest.fixture(params=["segments", "child_chunks"])
def searched(request: pytest.FixtureRequest, db: Database, index: VectorIndex) -> Corpus:
    """A corpus of segments or of child chunks: the searches hold for either."""
    if request.param == "segments":
        return Corpus(db, index, *workspace(db))
    return Corpus(db, index.children(), *workspace(db), children=True)


def exact(vectors: list[Vector], ids: list[str], query: Vector, k: int) -> list[str]:
    scores = np.stack(vectors) @ query
    return [ids[i] for i in np.argsort(-scores, kind="stable")[:k]]


class TestSearch:
    def test_nearest_first_with_cosine_similarities(self, searched: Corpus) -> None:
        vectors = random_vectors(40)
        dataset_id, _, ids = searched.dataset(vectors)
        query = unit(vectors[3] + 0.1 * random_vectors(1)[0])
        found = searched.search(dataset_id, query, limit=5)
        assert [i for i, _ in found] == exact(vectors, ids, query, 5)
        scores = [s for _, s in found]
        assert scores == sorted(scores, reverse=True)
        for segment_id, score in found:
            assert score == pytest.approx(float(vectors[ids.index(segment_id)] @ query), abs=1e-4)
        assert all(-1.0 <= s <= 1.0 for s in scores)

    def test_the_same_vector_is_found_first_with_similarity_one(self, searched: Corpus) -> None:
        vectors = random_vectors(10)
        dataset_id, _, ids = searched.dataset(vectors)
        ((first, score),) = searched.search(dataset_id, vectors[7], limit=1)
        assert first == ids[7]
        assert score == pytest.approx(1.0, abs=1e-4)

    def test_a_dataset_never_sees_anothers_vectors(self, searched: Corpus) -> None:
        mine, _, my_ids = searched.dataset(random_vectors(5))
        theirs_vectors = random_vectors(30)
        _, _, their_ids = searched.dataset(theirs_vectors)
        found = searched.search(mine, theirs_vectors[0], limit=20)
        assert {i for i, _ in found} == set(my_ids)
        assert not {i for i, _ in found} & set(their_ids)

    def test_an_empty_dataset_finds_nothing(self, searched: Corpus) -> None:
        dataset_id, _, _ = searched.dataset([])
        assert searched.search(dataset_id, random_vectors(1)[0]) == []
        assert searched.search(str(uuid.uuid4()), random_vectors(1)[0]) == []

    def test_limit_larger_than_the_dataset_returns_all(self, searched: Corpus) -> None:
        dataset_id, _, ids = searched.dataset(random_vectors(3))
        assert {i for i, _ in searched.search(dataset_id, random_vectors(1)[0], limit=50)} == set(
            ids
        )

    def test_a_document_filter_keeps_only_its_documents_segments(self, searched: Corpus) -> None:
        vectors = random_vectors(8)
        dataset_id, document_id, ids = searched.dataset(vectors)
        with searched.db.reads() as session:
            kept = searched.index.search(
                session, dataset_id, MODEL, vectors[0], 5, document_ids={document_id}
            )
            other = searched.index.search(
                session, dataset_id, MODEL, vectors[0], 5, document_ids={str(uuid.uuid4())}
            )
        assert [i for i, _ in kept] == exact(vectors, ids, vectors[0], 5)
        assert other == []


class TestWrites:
    def test_deleted_segments_and_documents_leave_the_index(self, corpus: Corpus) -> None:
        vectors = random_vectors(6)
        dataset_id, document_id, ids = corpus.dataset(vectors)
        with corpus.db.transaction() as session:
            session.execute(delete(DocumentSegment).where(DocumentSegment.id == ids[0]))
        found = {i for i, _ in corpus.search(dataset_id, vectors[0], limit=10)}
        assert ids[0] not in found
        assert found == set(ids[1:])
        with corpus.db.transaction() as session:
            session.execute(delete(Document).where(Document.id == document_id))
        assert corpus.search(dataset_id, vectors[1], limit=10) == []

    def test_a_rolled_back_write_leaves_nothing(self, corpus: Corpus) -> None:
        vectors = random_vectors(2)
        dataset_id, document_id, ids = corpus.dataset(vectors)
        extra = random_vectors(1)[0]
        text = f"never {uuid.uuid4()}"

        def index_then_fail() -> None:
            with corpus.db.transaction() as session:
                segment = DocumentSegment(
                    id=str(uuid.uuid4()),
                    tenant_id=corpus.tenant_id,
                    dataset_id=dataset_id,
                    document_id=document_id,
                    position=3,
                    content=text,
                    word_count=len(text),
                    status="completed",
                    created_by=corpus.account_id,
                    completed_at=utcnow(),
                    content_hash=content_hash(text),
                )
                session.add(segment)
                session.flush()
                store_vectors(session.connection(), MODEL, {segment.content_hash: extra})
                corpus.index.add(session, dataset_id, [(segment.id, extra)])
                raise RuntimeError("the use case failed after indexing")

        with pytest.raises(RuntimeError):
            index_then_fail()
        assert {i for i, _ in corpus.search(dataset_id, extra, limit=10)} == set(ids)

    def test_indexing_a_segment_again_takes_its_new_vector(self, corpus: Corpus) -> None:
        vectors = random_vectors(4)
        dataset_id, _, ids = corpus.dataset(vectors)
        moved = random_vectors(1)[0]
        text = f"moved {uuid.uuid4()}"
        with corpus.db.transaction() as session:
            session.execute(
                update(DocumentSegment)
                .where(DocumentSegment.id == ids[2])
                .values(content=text, content_hash=content_hash(text), completed_at=utcnow())
            )
            store_vectors(session.connection(), MODEL, {content_hash(text): moved})
            corpus.index.add(session, dataset_id, [(ids[2], moved)])
        ((first, score),) = corpus.search(dataset_id, moved, limit=1)
        assert (first, round(score, 3)) == (ids[2], 1.0)

    def test_models_of_other_dimensions_never_mix(self, corpus: Corpus) -> None:
        dataset_id, _, _ = corpus.dataset(random_vectors(3))
        other = random_vectors(1, dim=DIM * 2)[0]
        try:
            found = corpus.search(dataset_id, other)
        except ValueError:
            return  # refused: the dimensions differ
        assert found == []  # or nothing of the other dimension is found


class TestChildChunks:
    def test_deleted_children_and_parents_leave_the_index(
        self, db: Database, index: VectorIndex
    ) -> None:
        corpus = Corpus(db, index.children(), *workspace(db), children=True)
        vectors = random_vectors(6)
        dataset_id, _, ids = corpus.dataset(vectors)  # parents: (0, 1), (2, 3), (4, 5)
        # (Deletes only, before the first search: an in-process matrix read earlier may keep
        # them until the next change, and the caller drops what no longer exists.)
        with db.transaction() as session:
            session.execute(delete(ChildChunk).where(ChildChunk.id == ids[0]))
            parent = session.get(ChildChunk, ids[2])
            assert parent is not None
            session.execute(delete(DocumentSegment).where(DocumentSegment.id == parent.segment_id))
        found = {i for i, _ in corpus.search(dataset_id, vectors[2], limit=10)}
        assert found == {ids[1], ids[4], ids[5]}

    def test_the_segment_index_never_holds_child_vectors(
        self, db: Database, index: VectorIndex
    ) -> None:
        corpus = Corpus(db, index.children(), *workspace(db), children=True)
        vectors = random_vectors(4)
        dataset_id, _, ids = corpus.dataset(vectors)
        with db.reads() as session:
            segments_found = index.search(session, dataset_id, MODEL, vectors[0], 10)
        assert not {i for i, _ in segments_found} & set(ids)
        assert index.children() is index.children()


def test_a_new_models_width_is_prepared_and_searched_beside_the_others(
    db: Database, index: VectorIndex
) -> None:
    """A workspace model's first vectors, of a width no table had (pgvector makes its table in
    `prepare`, before the segments' transaction, which its foreign key would wait for)."""
    corpus = Corpus(db, index, *workspace(db))
    width = 40 + time.monotonic_ns() % 1000  # a width this database has not seen
    vectors = random_vectors(6, dim=width)
    started = time.monotonic()
    dataset_id, _, ids = corpus.dataset(vectors)
    assert time.monotonic() - started < 5  # not a lock timeout's wait
    assert corpus.search(dataset_id, vectors[4], limit=2)[0][0] == ids[4]
    # The datasets of the usual width are unaffected.
    usual, _, usual_ids = corpus.dataset(random_vectors(3))
    assert {i for i, _ in corpus.search(usual, random_vectors(1)[0])} == set(usual_ids)


def test_pgvector_takes_in_the_vectors_indexed_before_its_table(db: Database) -> None:
    """Segments indexed while the matrix served (or before pgvector was installed) are copied
    from the embedding cache when the table is made."""
    if db.dialect != "postgresql" or not pgvector_available(db):
        pytest.skip("pgvector on PostgreSQL")
    ids = workspace(db)
    vectors = random_vectors(12, dim=24)
    earlier = Corpus(db, MatrixIndex(), *ids)
    dataset_id, _, segment_ids = earlier.dataset(vectors)
    later = PgVectorIndex(db)
    later.ensure(24)
    found = Corpus(db, later, *ids).search(dataset_id, vectors[5], limit=3)
    assert found[0][0] == segment_ids[5]
    assert len(found) == 3
