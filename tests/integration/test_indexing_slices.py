"""The indexing slice (`conduit/services/datasets/indexing.py`) on the test database, driven
step by step: its claim and lease, the zombie that lost its lease, retries and their end,
fatal errors, hand-on after a slice, and the resume of a document whose worker died. The
embedder is a real HTTP endpoint (the fake model server) behind the embedding cache, so
failures can be ordered."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from conduit.core.rag.embed.local import tokenizer
from conduit.core.rag.embed.openai_compatible import OpenAICompatibleEmbedder
from conduit.core.rag.split import Splitter
from conduit.db.models import (
    Document,
    DocumentSegment,
    IndexingStatus,
    IndexingTechnique,
    OutboxMessage,
    utcnow,
)
from conduit.infra.db import Database
from conduit.infra.settings import RagSettings
from conduit.infra.storage import LocalStorage
from conduit.services.accounts import create_admin
from conduit.services.datasets import datasets, documents
from conduit.services.datasets.documents import INDEX_TASK, DocumentRequest
from conduit.services.datasets.embedders import Embedders
from conduit.services.datasets.indexing import Indexer, Lease, LeaseLost, resume_stalled_documents
from conduit.services.embeddings import CachedEmbedder
from tests.fakes.fake_openai import FakeOpenAIThread

SPLITTER = Splitter(tokenizer())
# Ten parts of about 130 tokens: ten segments at 200 tokens, cut at "\n\n".
TEXT = "\n\n".join(
    f"Part {n}: " + " ".join(f"sentence {n}.{i} of the manual." for i in range(15))
    for n in range(10)
)
FAST = RagSettings(
    embed_batch=4, lease_seconds=2, retry_base=0.01, retry_max=0.05, max_retries=2, max_resumes=1
)


def indexer(
    db: Database,
    tmp_path: Path,
    fake: FakeOpenAIThread,
    settings: RagSettings = FAST,
    name: str = "A",
) -> Indexer:
    model = OpenAICompatibleEmbedder(
        provider="fake", base_url=fake.base_url, model="embed", timeout=2
    )
    return Indexer(
        db=db,
        storage=LocalStorage(tmp_path / "files"),
        settings=settings,
        # The fake endpoint stands in for the process's own model (the datasets name none).
        embedders=Embedders(
            secret="test", local=lambda: model, wrap=lambda inner: CachedEmbedder(inner, db)
        ),
        splitter=SPLITTER,
        worker_id=f"worker-{name}",
    )


@pytest.fixture
def document_id(db: Database, tmp_path: Path) -> str:
    with db.transaction() as session:
        account, tenant, _ = create_admin(
            session,
            email=f"index-{time.monotonic_ns()}@example.com",
            password="correct horse battery",
            workspace="Indexing",
        )
        dataset = datasets.create_dataset(
            session,
            tenant_id=tenant.id,
            account_id=account.id,
            fields=datasets.DatasetFields(
                name=f"Manuals {time.monotonic_ns()}",
                indexing_technique=IndexingTechnique.HIGH_QUALITY,
            ),
        )
        document, _ = documents.create_document(
            session,
            LocalStorage(tmp_path / "files"),
            dataset,
            account_id=account.id,
            filename="manual.txt",
            data=TEXT.encode(),
            mime_type="text/plain",
            request=DocumentRequest.parse(
                {
                    "process_rule": {
                        "mode": "custom",
                        "rules": {
                            "segmentation": {
                                "separator": "\n\n",
                                "max_tokens": 200,
                                "chunk_overlap": 0,
                            }
                        },
                    }
                }
            ),
            limit_mb=15,
        )
        return document.id


def state(db: Database, document_id: str) -> Document:
    with db.transaction() as session:
        found = session.get(Document, document_id)
        assert found is not None
        session.expunge(found)
        return found


def segment_count(db: Database, document_id: str) -> int:
    with db.transaction() as session:
        return int(
            session.scalar(select(func.count()).where(DocumentSegment.document_id == document_id))
            or 0
        )


def queued(db: Database, document_id: str) -> list[OutboxMessage]:
    with db.transaction() as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.task == INDEX_TASK)).all()
        return [row for row in rows if row.kwargs.get("document_id") == document_id]


def lapse(db: Database, document_id: str) -> None:
    """As if the holder stopped renewing a while ago (a dead worker)."""
    with db.transaction() as session:
        session.execute(
            update(Document)
            .where(Document.id == document_id)
            .values(renewed_at=utcnow() - timedelta(seconds=60))
        )


class TestSlices:
    def test_a_document_is_indexed_once_and_a_second_delivery_is_skipped(
        self, db: Database, tmp_path: Path, fake: FakeOpenAIThread, document_id: str
    ) -> None:
        worker = indexer(db, tmp_path, fake)
        assert worker.run(document_id, 0) == "completed"
        done = state(db, document_id)
        assert done.indexing_status == IndexingStatus.COMPLETED
        assert done.total_segments == done.completed_segments == 10
        assert done.lease_owner is None
        assert segment_count(db, document_id) == 10
        assert worker.run(document_id, 0) == "skipped"
        assert segment_count(db, document_id) == 10
        assert len(fake.stats()["log"]) == 3  # 10 segments in batches of 4

    def test_a_worker_that_lost_its_lease_writes_nothing(
        self, db: Database, tmp_path: Path, fake: FakeOpenAIThread, document_id: str
    ) -> None:
        zombie = indexer(db, tmp_path, fake, name="zombie")
        epoch = zombie._claim(document_id, 0)
        assert epoch is not None
        assert indexer(db, tmp_path, fake, name="B")._claim(document_id, 0) is None  # held
        lapse(db, document_id)
        assert indexer(db, tmp_path, fake, name="B").run(document_id, 0) == "completed"
        stale = Lease(db, document_id, epoch, FAST.lease_seconds)
        with pytest.raises(LeaseLost):
            zombie._stage(stale, IndexingStatus.PARSING)
        assert zombie._fail(stale, 0, "too late") == "lost"
        after = state(db, document_id)
        assert after.indexing_status == IndexingStatus.COMPLETED
        assert after.error is None
        assert segment_count(db, document_id) == 10

    def test_a_slice_hands_the_rest_on_and_the_next_carries_on(
        self, db: Database, tmp_path: Path, fake: FakeOpenAIThread, document_id: str
    ) -> None:
        brief = indexer(db, tmp_path, fake, FAST.model_copy(update={"slice_seconds": 1e-6}))
        outcomes = []
        for _ in range(10):
            outcomes.append(brief.run(document_id, 0))
            if outcomes[-1] == "completed":
                break
        assert outcomes[0] == "continued"
        assert outcomes[-1] == "completed"
        assert len(queued(db, document_id)) == 1 + outcomes.count("continued")
        assert segment_count(db, document_id) == 10
        assert len(fake.stats()["log"]) == 3  # no batch embedded twice


class TestFailures:
    def test_a_retryable_failure_is_retried_with_its_reason_then_ends_in_error(
        self, db: Database, tmp_path: Path, fake: FakeOpenAIThread, document_id: str
    ) -> None:
        fake.control("status-503", times=10)
        worker = indexer(db, tmp_path, fake)
        assert worker.run(document_id, 0) == "retrying"
        first = state(db, document_id)
        assert first.attempts == 1
        assert first.indexing_status == IndexingStatus.INDEXING
        assert "retry 1 of 2" in (first.last_failure or "")
        assert "answered 503" in (first.last_failure or "")
        assert first.lease_owner is None and first.due_at is not None
        assert len(queued(db, document_id)) == 2  # the create's, and the retry's (delayed)
        time.sleep(0.1)
        assert worker.run(document_id, 0) == "retrying"
        time.sleep(0.1)
        assert worker.run(document_id, 0) == "error"
        final = state(db, document_id)
        assert final.indexing_status == IndexingStatus.ERROR
        assert "failed 3 times in a row" in (final.error or "")
        assert segment_count(db, document_id) == 0

    def test_a_success_resets_the_retry_count(
        self, db: Database, tmp_path: Path, fake: FakeOpenAIThread, document_id: str
    ) -> None:
        fake.control("status-503", times=1)
        worker = indexer(db, tmp_path, fake)
        assert worker.run(document_id, 0) == "retrying"
        time.sleep(0.1)
        assert worker.run(document_id, 0) == "completed"
        assert state(db, document_id).attempts == 0

    def test_a_refusal_ends_at_once_and_leaves_nothing(
        self, db: Database, tmp_path: Path, fake: FakeOpenAIThread, document_id: str
    ) -> None:
        fake.control("status-401", times=5)
        assert indexer(db, tmp_path, fake).run(document_id, 0) == "error"
        final = state(db, document_id)
        assert "refused the request with 401" in (final.error or "")
        assert final.stopped_at is not None
        assert segment_count(db, document_id) == 0


class TestResume:
    def test_a_document_whose_worker_died_is_resumed_then_given_up(
        self, db: Database, tmp_path: Path, fake: FakeOpenAIThread, document_id: str
    ) -> None:
        dead = indexer(db, tmp_path, fake, name="dead")
        assert dead._claim(document_id, 0) is not None  # ...and then it dies
        assert resume_stalled_documents(db, FAST) == 0  # its lease is still live
        lapse(db, document_id)
        assert resume_stalled_documents(db, FAST) == 1
        resumed = state(db, document_id)
        assert resumed.resumes == 1 and resumed.lease_owner is None
        assert "its worker stopped" in (resumed.last_failure or "")
        assert len(queued(db, document_id)) == 2

        assert dead._claim(document_id, 0) is not None  # the resumed task dies too
        lapse(db, document_id)
        assert resume_stalled_documents(db, FAST) == 1
        given_up = state(db, document_id)
        assert given_up.indexing_status == IndexingStatus.ERROR
        assert "stopped 2 times" in (given_up.error or "")

    def test_a_resumed_document_completes(
        self, db: Database, tmp_path: Path, fake: FakeOpenAIThread, document_id: str
    ) -> None:
        assert indexer(db, tmp_path, fake, name="dead")._claim(document_id, 0) is not None
        lapse(db, document_id)
        resume_stalled_documents(db, FAST)
        assert indexer(db, tmp_path, fake, name="B").run(document_id, 0) == "completed"
        assert segment_count(db, document_id) == 10


class TestUpdates:
    def test_an_update_takes_the_document_from_the_task_indexing_the_old_text(
        self, db: Database, tmp_path: Path, fake: FakeOpenAIThread, document_id: str
    ) -> None:
        old = indexer(db, tmp_path, fake, name="old")
        epoch = old._claim(document_id, 0)
        assert epoch is not None
        # The old generation completed once, so that an update is allowed.
        with db.transaction() as session:
            session.execute(
                update(Document)
                .where(Document.id == document_id)
                .values(indexing_status=IndexingStatus.COMPLETED)
            )
        with db.transaction() as session:
            document = session.get(Document, document_id)
            assert document is not None
            documents.update_document(
                session,
                LocalStorage(tmp_path / "files"),
                document,
                account_id=document.created_by,
                name="manual.txt",
                upload=("manual.txt", b"Part one: a new text of one segment.", "text/plain"),
                process_rule=None,
                limit_mb=15,
            )
        stale = Lease(db, document_id, epoch, FAST.lease_seconds)
        with pytest.raises(LeaseLost):
            old._stage(stale, IndexingStatus.PARSING)
        assert old.run(document_id, 0) == "skipped"  # the old generation's delivery
        assert indexer(db, tmp_path, fake, name="new").run(document_id, 1) == "completed"
        after = state(db, document_id)
        assert (after.index_generation, after.total_segments) == (1, 1)
        assert segment_count(db, document_id) == 1
