"""Indexing one document, so that it cannot get stuck.

A task holds a document through a **lease**: its claim is one guarded UPDATE that bumps
`lease_epoch` (the fencing token) and a heartbeat thread renews `renewed_at` every quarter of
the lease. Every later write is guarded by that epoch (and by the document still being
unfinished and unpaused): a worker that lost its lease — it stalled, the document was deleted
or paused, another resumed it — writes nothing more and stops at its next check.

The stages (`parsing` → `cleaning` → `splitting` → `indexing` → `completed`) each stamp their
time, so a poller sees progress. The split's segments are written in the transaction that ends
splitting; then segments are embedded in batches, each batch committed with the document's
progress in one transaction, so a resumed document carries on where it stopped and never does a
batch twice. After `slice_seconds` a task hands the rest to a fresh task (an outbox row in the
transaction that releases its lease), so no document outlives a task's time limit.

Failures end in words: a problem with the file (`FatalIndexingError`) ends the document in
`error` with its message and removes what it had written; a failure outside it
(`RetryableIndexingError`: the embedding endpoint down) is retried by a delayed outbox row with
backoff and jitter, its reason visible meanwhile, until `max_retries`. A worker that dies leaves
a lease that lapses: `resume_stalled_documents` (every server's takeover loop) hands the
document to a new task, and ends it in `error` after `max_resumes` — a document that kills its
worker every time does not loop forever.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from conduit.core.llm.errors import ModelError, ProviderUnavailable
from conduit.core.llm.provider import Delta, Finished, GenerationParams
from conduit.core.llm.registry import ModelRegistry
from conduit.core.rag.clean import CleaningRules, clean
from conduit.core.rag.embed.base import Embedder
from conduit.core.rag.embed.local import LocalEmbedder, tokenizer
from conduit.core.rag.errors import FatalIndexingError, RetryableIndexingError
from conduit.core.rag.extract import ExtractLimits, extract
from conduit.core.rag.qa import parse_pairs, qa_prompt
from conduit.core.rag.split import Segmentation, Splitter
from conduit.db.models import (
    ChildChunk,
    Dataset,
    DatasetProcessRule,
    Document,
    DocumentSegment,
    IndexingStatus,
    IndexingTechnique,
    ProcessMode,
    QaSource,
    UploadFile,
    utcnow,
)
from conduit.errors import DocumentIndexing
from conduit.infra.db import Database
from conduit.infra.outbox import enqueue
from conduit.infra.resources import Resources
from conduit.infra.settings import RagSettings
from conduit.infra.storage import Storage, local_storage
from conduit.services.datasets import keywords
from conduit.services.datasets.documents import (
    AUTOMATIC_RULES,
    HIERARCHICAL_MODEL,
    INDEX_TASK,
    QA_MODEL,
    UNFINISHED,
    parent_child_rule,
)
from conduit.services.datasets.embedders import Embedders
from conduit.services.datasets.vectors import MatrixIndex, VectorIndex, build_vector_index
from conduit.services.embeddings import CachedEmbedder, content_hash
from conduit.services.model_providers import (
    add_usage,
    check_quota,
    default_provider,
    provider_ref,
)
from conduit.signals import signals

logger = logging.getLogger(__name__)

_DOCUMENTS = cast(Table, Document.__table__)
_SEGMENTS = cast(Table, DocumentSegment.__table__)
_CHILDREN = cast(Table, ChildChunk.__table__)
_QA = cast(Table, QaSource.__table__)
# Q&A documents: chunks a batch asks the chat model about (at most this many at once), and
# the most one answer may hold.
QA_BATCH = 4
QA_CONCURRENCY = 4
QA_MAX_TOKENS = 1024
_TERMINAL = (IndexingStatus.COMPLETED.value, IndexingStatus.ERROR.value)
_RETRYABLE = (RetryableIndexingError, OperationalError, ConnectionError, TimeoutError)


class LeaseLost(Exception):
    """The document is no longer this task's (another holds it, or it was deleted, paused or
    ended): stop and write nothing."""


@dataclass
class Lease:
    """A claimed document's lease, renewed by a thread every quarter of its length."""

    db: Database
    document_id: str
    epoch: int
    seconds: float
    lost: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._renew_continually, name=f"lease-{self.document_id[:8]}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLost()

    def guard(self) -> Any:
        """The WHERE clause of every write of the holder."""
        return and_(
            _DOCUMENTS.c.id == self.document_id,
            _DOCUMENTS.c.lease_epoch == self.epoch,
            _DOCUMENTS.c.indexing_status.not_in(_TERMINAL),
            _DOCUMENTS.c.is_paused.is_(False),
        )

    def try_write(self, connection: Connection, *where: Any, **values: Any) -> bool:
        """Update the document if it is still this lease's (and unfinished, unpaused)."""
        found = connection.execute(update(_DOCUMENTS).where(self.guard(), *where).values(**values))
        return bool(found.rowcount)

    def write(self, connection: Connection, *where: Any, **values: Any) -> None:
        """`try_write`, or `LeaseLost` when the document is no longer this lease's."""
        if not self.try_write(connection, *where, **values):
            raise LeaseLost()

    def _renew_continually(self) -> None:
        while not self._stop.wait(self.seconds / 4):
            try:
                with self.db.statements() as connection:
                    renewed = self.try_write(connection, renewed_at=utcnow())
            except Exception:
                logger.warning(
                    "document %s: renewing its lease failed", self.document_id, exc_info=True
                )
                continue
            if not renewed:
                self.lost.set()
                return


@dataclass(frozen=True)
class Indexer:
    """What indexing needs: the database, the stored files, the settings, the embedding
    models (each dataset's, behind the embedding cache), the splitter, and this worker's
    name."""

    db: Database
    storage: Storage
    settings: RagSettings
    embedders: Embedders
    splitter: Splitter
    worker_id: str
    vectors: VectorIndex = field(default_factory=MatrixIndex)
    # Q&A documents' question writer: the workspace's default provider, else the server's
    # model (its ref and name).
    chat_models: ModelRegistry | None = None
    server_model: tuple[dict[str, Any], str] = ({"provider": "local"}, "")

    def run(self, document_id: str, generation: int) -> str:
        """Work on the document for one slice; what happened: skipped (not ours to do),
        completed, continued (handed on), retrying, error, or lost (taken from us)."""
        epoch = self._claim(document_id, generation)
        if epoch is None:
            return "skipped"
        lease = Lease(self.db, document_id, epoch, self.settings.lease_seconds)
        lease.start()
        try:
            return self._work(lease, generation)
        except LeaseLost:
            logger.info("document %s: lease lost; stopping without writing", document_id)
            return "lost"
        except FatalIndexingError as exc:
            return self._fail(lease, generation, exc.message)
        except _RETRYABLE as exc:
            return self._retry(lease, generation, _reason(exc))
        finally:
            lease.stop()

    # --- claim -----------------------------------------------------------------------------

    def _claim(self, document_id: str, generation: int) -> int | None:
        now = utcnow()
        lapsed = now - timedelta(seconds=self.settings.lease_seconds)
        with self.db.statements() as connection:
            return connection.execute(
                update(_DOCUMENTS)
                .where(
                    _DOCUMENTS.c.id == document_id,
                    _DOCUMENTS.c.index_generation == generation,
                    _DOCUMENTS.c.indexing_status.not_in(_TERMINAL),
                    _DOCUMENTS.c.is_paused.is_(False),
                    or_(_DOCUMENTS.c.lease_owner.is_(None), _DOCUMENTS.c.renewed_at < lapsed),
                    or_(
                        _DOCUMENTS.c.due_at.is_(None),
                        _DOCUMENTS.c.due_at <= now + timedelta(seconds=1),
                    ),
                )
                .values(
                    lease_owner=self.worker_id,
                    lease_epoch=_DOCUMENTS.c.lease_epoch + 1,
                    renewed_at=now,
                    due_at=None,
                )
                .returning(_DOCUMENTS.c.lease_epoch)
            ).scalar()

    # --- the stages ------------------------------------------------------------------------

    def _work(self, lease: Lease, generation: int) -> str:
        started = time.monotonic()
        with self.db.transaction() as session:
            document = session.get(Document, lease.document_id)
            if document is None or document.lease_epoch != lease.epoch:
                raise LeaseLost()
            name, split_done = document.name, document.splitting_completed_at is not None
            dataset = session.get(Dataset, document.dataset_id)
            if dataset is None:
                raise LeaseLost()  # deleted with its documents meanwhile
            embedder = None
            if dataset.indexing_technique == IndexingTechnique.HIGH_QUALITY:
                try:
                    embedder = self.embedders.for_dataset(session, dataset)
                except ModelError as error:  # its provider is gone, or no longer serves it
                    raise FatalIndexingError(error.message) from None
            file_key = _file_key(session, document)
            rule = _rule(session, document)
            children = document.doc_form == HIERARCHICAL_MODEL
            qa = document.doc_form == QA_MODEL
            language = document.doc_language or "English"
            writer = self._question_writer(session, document.tenant_id) if qa else None
        if not split_done:
            if not (qa and self._has_sources(lease, generation)):
                self._split(lease, generation, name, file_key, rule, qa=qa)
            if writer is not None:
                while self._write_pairs(lease, generation, writer, language):
                    lease.check()
                    if time.monotonic() - started > self.settings.slice_seconds:
                        return self._hand_on(lease, generation)
                self._write_qa_segments(lease, generation, name)
        # At least one batch per slice, so that every slice makes progress.
        while self._index_batch(lease, generation, embedder, children=children):
            lease.check()
            if time.monotonic() - started > self.settings.slice_seconds:
                return self._hand_on(lease, generation)
        return self._complete(lease)

    def _stage(self, lease: Lease, status: IndexingStatus, **stamps: Any) -> None:
        with self.db.statements() as connection:
            lease.write(connection, indexing_status=status.value, renewed_at=utcnow(), **stamps)

    def _split(
        self,
        lease: Lease,
        generation: int,
        name: str,
        file_key: str | None,
        rule: dict[str, Any],
        *,
        qa: bool = False,
    ) -> None:
        now = utcnow()
        with self.db.statements() as connection:
            lease.try_write(
                connection, _DOCUMENTS.c.processing_started_at.is_(None), processing_started_at=now
            )
        self._stage(lease, IndexingStatus.PARSING)
        if file_key is None:
            raise FatalIndexingError(f"'{name}' has no uploaded file to index.")
        try:
            data = self.storage.load(file_key)
        except FileNotFoundError:
            raise FatalIndexingError(
                f"The uploaded file of '{name}' is missing from storage (in the distributed "
                "mode every worker must see the servers' data folder)."
            ) from None
        extracted = extract(
            name,
            data,
            ExtractLimits(
                timeout=self.settings.parse_timeout, memory_mb=self.settings.parse_memory_mb
            ),
        )
        lease.check()
        self._stage(lease, IndexingStatus.CLEANING, parsing_completed_at=utcnow())
        enabled = {r["id"] for r in rule.get("pre_processing_rules", []) if r.get("enabled")}
        text = clean(
            extracted.text,
            CleaningRules(
                remove_extra_spaces="remove_extra_spaces" in enabled,
                remove_urls_emails="remove_urls_emails" in enabled,
            ),
        )
        self._stage(lease, IndexingStatus.SPLITTING, cleaning_completed_at=utcnow())
        if rule.get("mode") == ProcessMode.HIERARCHICAL.value:
            pairs = self.splitter.split_parent_child(
                text, parent_child_rule(rule), markdown=extracted.markdown
            )
            if not pairs:
                raise FatalIndexingError(f"No text is left in '{name}' after cleaning.")
            lease.check()
            self._write_segments(
                lease, generation, [parent for parent, _ in pairs], [kids for _, kids in pairs]
            )
            return
        seg = rule.get("segmentation") or AUTOMATIC_RULES["segmentation"]
        segmentation = Segmentation(
            mode="custom" if rule.get("mode") == "custom" else "automatic",
            separator=seg.get("separator", "\n"),
            max_tokens=seg["max_tokens"],
            chunk_overlap=seg.get("chunk_overlap", 0),
        )
        chunks = self.splitter.split(text, segmentation, markdown=extracted.markdown)
        if not chunks:
            raise FatalIndexingError(f"No text is left in '{name}' after cleaning.")
        lease.check()
        if qa:
            self._write_sources(lease, generation, chunks)
        else:
            self._write_segments(lease, generation, chunks)

    # --- Q&A documents: the chat model's pairs, chunk by chunk -------------------------------

    def _question_writer(self, session: Session, tenant_id: str) -> tuple[dict[str, Any], str]:
        """Who writes a Q&A document's pairs: the workspace's default provider (its first
        model), else the server's model; its ref (`ModelRegistry.resolve`) and model name."""
        found = default_provider(session, tenant_id)
        if found is None:
            return self.server_model
        ref = provider_ref(found)
        try:
            check_quota(session, ref)
        except ModelError as error:
            raise FatalIndexingError(
                f"The chat model that writes the questions and answers: {error.message}"
            ) from None
        return ref, str(ref.get("default_model") or self.server_model[1])

    def _has_sources(self, lease: Lease, generation: int) -> bool:
        with self.db.statements() as connection:
            return (
                connection.execute(
                    select(_QA.c.id)
                    .where(_QA.c.document_id == lease.document_id, _QA.c.generation == generation)
                    .limit(1)
                ).first()
                is not None
            )

    def _write_sources(self, lease: Lease, generation: int, chunks: Sequence[str]) -> None:
        """The split's chunks, waiting for their pairs; the document's progress then counts
        chunks (still `splitting`: the segments come once every chunk has its pairs)."""
        now = utcnow()
        with self.db.transaction() as session:
            lease.write(
                session.connection(),
                total_segments=len(chunks),
                completed_segments=0,
                renewed_at=now,
            )
            insert = pg_insert if self.db.dialect == "postgresql" else sqlite_insert
            session.execute(
                insert(_QA).on_conflict_do_nothing(),
                [
                    {
                        "id": _segment_id(),
                        "document_id": lease.document_id,
                        "generation": generation,
                        "position": position,
                        "content": chunk,
                        "created_at": now,
                    }
                    for position, chunk in enumerate(chunks, start=1)
                ],
            )

    def _write_pairs(
        self, lease: Lease, generation: int, writer: tuple[dict[str, Any], str], language: str
    ) -> bool:
        """The chat model's pairs for the next chunks (asked outside any transaction); the
        chunks it answered in time stored with the document's progress and the provider's
        usage in one transaction; False when every chunk has its pairs."""
        with self.db.statements() as connection:
            batch = connection.execute(
                select(_QA.c.id, _QA.c.content)
                .where(
                    _QA.c.document_id == lease.document_id,
                    _QA.c.generation == generation,
                    _QA.c.pairs.is_(None),
                )
                .order_by(_QA.c.position)
                # The local model answers one prompt at a time: a chunk per batch.
                .limit(1 if writer[0].get("provider") == "local" else QA_BATCH)
            ).all()
        if not batch:
            return False
        written, tokens = self._ask_pairs(writer, [row.content for row in batch], language)
        answered = [
            (row, pairs) for row, pairs in zip(batch, written, strict=True) if pairs is not None
        ]
        lease.check()
        with self.db.transaction() as session:
            lease.write(
                session.connection(),
                _DOCUMENTS.c.indexing_status == IndexingStatus.SPLITTING.value,
                completed_segments=_DOCUMENTS.c.completed_segments + len(answered),
                attempts=0,
                renewed_at=utcnow(),
            )
            for row, pairs in answered:
                done = (
                    session.connection()
                    .execute(
                        update(_QA)
                        .where(_QA.c.id == row.id, _QA.c.pairs.is_(None))
                        .values(pairs=[[question, answer] for question, answer in pairs])
                    )
                    .rowcount
                )
                if done != 1:
                    session.rollback()
                    raise LeaseLost()
            provider_id = writer[0].get("credential_id")
            if provider_id and tokens:
                add_usage(session, str(provider_id), tokens)
        return True

    def _ask_pairs(
        self, writer: tuple[dict[str, Any], str], texts: list[str], language: str
    ) -> tuple[list[list[tuple[str, str]] | None], int]:
        """Each text's pairs by the chat model (a few at once, on an event loop of this
        thread's own), None for one not answered within the batch's time, and the tokens
        used; a model that refuses for good is the document's error, one that is down or busy
        (or answers none of the texts in time) a retry."""
        if self.chat_models is None:
            raise FatalIndexingError("Q&A documents need a chat model, which this process lacks.")
        models, (ref, name) = self.chat_models, writer
        used = [0]

        async def ask(model: Any, text: str, limit: asyncio.Semaphore) -> list[tuple[str, str]]:
            async with limit:
                parts: list[str] = []
                cut = False
                async for item in model.stream_chat(
                    qa_prompt(text, language),
                    GenerationParams(model=name, temperature=0.3, max_tokens=QA_MAX_TOKENS),
                ):
                    if isinstance(item, Delta):
                        parts.append(item.text)
                    elif isinstance(item, Finished):
                        used[0] += item.usage.total_tokens
                        cut = item.finish_reason == "length"
                pairs = parse_pairs("".join(parts), cut=cut)
                if not pairs:
                    logger.warning("a Q&A chunk got no pairs from the chat model %r", name)
                return pairs

        # A batch ends well inside the task's time limit (a slice is at most a quarter of
        # it); what was answered by then is kept.
        deadline = 2 * self.settings.slice_seconds

        async def ask_all() -> list[list[tuple[str, str]] | None]:
            try:
                model = await models.resolve(ref)
                limit = asyncio.Semaphore(QA_CONCURRENCY)
                tasks = [asyncio.create_task(ask(model, text, limit)) for text in texts]
                done, pending = await asyncio.wait(tasks, timeout=deadline)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                failed = next((t.exception() for t in tasks if t in done and t.exception()), None)
                if failed is not None:
                    raise failed
                return [task.result() if task in done else None for task in tasks]
            finally:
                await models.aclose()

        try:
            found = asyncio.run(ask_all())
        except ModelError as error:
            if error.retryable or isinstance(error, ProviderUnavailable):
                raise RetryableIndexingError(
                    f"The chat model that writes the questions and answers: {error.message}"
                ) from None
            raise FatalIndexingError(
                f"The chat model that writes the questions and answers failed: {error.message}"
            ) from None
        if all(pairs is None for pairs in found):
            raise RetryableIndexingError(
                f"The chat model that writes the questions and answers took over {deadline:.0f} s "
                f"for {len(texts)} chunk(s)."
            )
        return found, used[0]

    def _write_qa_segments(self, lease: Lease, generation: int, name: str) -> None:
        """Every chunk's pairs become the document's segments (the question its content, the
        answer its answer), in order, with the move to `indexing`; the chunks go."""
        with self.db.statements() as connection:
            written = connection.execute(
                select(_QA.c.pairs)
                .where(_QA.c.document_id == lease.document_id, _QA.c.generation == generation)
                .order_by(_QA.c.position)
            ).all()
        pairs = [(str(q), str(a)) for (found,) in written for q, a in found or ()]
        if not pairs:
            raise FatalIndexingError(
                f"The chat model wrote no question-and-answer pairs for '{name}' (it must answer "
                "in the form Q1: … A1: …)."
            )
        self._write_segments(
            lease, generation, [q for q, _ in pairs], answers=[a for _, a in pairs]
        )

    def _write_segments(
        self,
        lease: Lease,
        generation: int,
        chunks: Sequence[str],
        children: Sequence[Sequence[str]] | None = None,
        *,
        answers: Sequence[str] | None = None,
    ) -> None:
        """The split's segments (and a parent-child document's child chunks of each; a Q&A
        document's answers, its chunks then gone), with the document's move to `indexing`, in
        one transaction."""
        now = utcnow()
        with self.db.transaction() as session:
            document = session.get(Document, lease.document_id)
            if document is None:
                raise LeaseLost()
            lease.write(
                session.connection(),
                indexing_status=IndexingStatus.INDEXING.value,
                splitting_completed_at=now,
                total_segments=len(chunks),
                completed_segments=0,
                word_count=sum(len(chunk) for chunk in chunks) + sum(map(len, answers or ())),
                renewed_at=now,
            )
            rows: list[dict[str, Any]] = [
                {
                    "id": _segment_id(),
                    "tenant_id": document.tenant_id,
                    "dataset_id": document.dataset_id,
                    "document_id": document.id,
                    "position": position,
                    "content": chunk,
                    "word_count": len(chunk),
                    "tokens": self.splitter.count(chunk),
                    "status": "waiting",
                    "created_by": document.created_by,
                    "created_at": now,
                    "updated_at": now,
                    "generation": generation,
                    "content_hash": content_hash(chunk),
                    "hit_count": 0,
                    "enabled": True,
                }
                for position, chunk in enumerate(chunks, start=1)
            ]
            if answers is not None:
                for row, answer in zip(rows, answers, strict=True):
                    row["answer"] = answer
                    row["word_count"] += len(answer)
                    row["tokens"] += self.splitter.count(answer)
            insert = pg_insert if self.db.dialect == "postgresql" else sqlite_insert
            session.execute(insert(_SEGMENTS).on_conflict_do_nothing(), rows)
            if answers is not None:
                session.execute(delete(_QA).where(_QA.c.document_id == document.id))
            if children is None:
                return
            # The rows as stored, by position (the lease's guarded write above makes another
            # split of this generation impossible; the ids are read back all the same).
            stored = {
                position: segment_id
                for position, segment_id in session.execute(
                    select(_SEGMENTS.c.position, _SEGMENTS.c.id).where(
                        _SEGMENTS.c.document_id == document.id,
                        _SEGMENTS.c.generation == generation,
                    )
                )
            }
            kids = [
                {
                    "id": (chunk_id := _segment_id()),
                    "tenant_id": document.tenant_id,
                    "dataset_id": document.dataset_id,
                    "document_id": document.id,
                    "segment_id": stored[parent["position"]],
                    "position": position,
                    "content": kid,
                    "word_count": len(kid),
                    "index_node_id": chunk_id,
                    "index_node_hash": content_hash(kid),
                    "type": "automatic",
                    "created_by": document.created_by,
                    "created_at": now,
                    "updated_at": now,
                    "content_hash": content_hash(kid),
                }
                for parent, its in zip(rows, children, strict=True)
                for position, kid in enumerate(its, start=1)
            ]
            if kids:
                session.execute(insert(_CHILDREN), kids)

    def _index_batch(
        self, lease: Lease, generation: int, embedder: Embedder | None, *, children: bool = False
    ) -> bool:
        """Embed (a high-quality dataset's, with its model) and complete the next batch; False
        when none is left. `children`: a parent-child document's, whose child chunks are
        embedded and indexed instead of the segments."""
        with self.db.statements() as connection:
            batch = connection.execute(
                select(
                    _SEGMENTS.c.id, _SEGMENTS.c.content, _SEGMENTS.c.tokens, _SEGMENTS.c.dataset_id
                )
                .where(
                    _SEGMENTS.c.document_id == lease.document_id,
                    _SEGMENTS.c.generation == generation,
                    _SEGMENTS.c.status != "completed",
                )
                .order_by(_SEGMENTS.c.position)
                .limit(self.settings.embed_batch)
            ).all()
        if not batch:
            return False
        embedded = None
        index = self.vectors.children() if children else self.vectors
        units: list[tuple[str, str]] = [(row.id, row.content) for row in batch]
        if children:
            with self.db.statements() as connection:
                units = [
                    (kid.id, kid.content)
                    for kid in connection.execute(
                        select(_CHILDREN.c.id, _CHILDREN.c.content)
                        .where(_CHILDREN.c.segment_id.in_([row.id for row in batch]))
                        .order_by(_CHILDREN.c.segment_id, _CHILDREN.c.position)
                    )
                ]
        if embedder is not None and units:
            # The vectors go to the embedding cache (by model and text), and into the vector
            # index with the segments' completion below.
            embedded = embedder.embed([content for _, content in units]).vectors
            # A model's first vectors of their width: pgvector's table is made before the
            # transaction below, which writes segments (its foreign key would wait for it).
            index.prepare(int(embedded.shape[1]))
        lease.check()
        now = utcnow()
        with self.db.transaction() as session:
            lease.write(
                session.connection(),
                _DOCUMENTS.c.indexing_status == IndexingStatus.INDEXING.value,
                completed_segments=_DOCUMENTS.c.completed_segments + len(batch),
                tokens=_DOCUMENTS.c.tokens + sum(row.tokens for row in batch),
                attempts=0,
                renewed_at=now,
            )
            done = (
                session.connection()
                .execute(
                    update(_SEGMENTS)
                    .where(
                        _SEGMENTS.c.id.in_([row.id for row in batch]),
                        _SEGMENTS.c.status != "completed",
                    )
                    .values(
                        status="completed",
                        indexing_at=now,
                        completed_at=now,
                        index_node_id=_SEGMENTS.c.id,
                        index_node_hash=_SEGMENTS.c.content_hash,
                        updated_at=now,
                    )
                )
                .rowcount
            )
            if done != len(batch):
                session.rollback()
                raise LeaseLost()
            keywords.add(session, batch[0].dataset_id, [(row.id, row.content) for row in batch])
            if embedded is not None:
                index.add(
                    session,
                    batch[0].dataset_id,
                    [(unit[0], vector) for unit, vector in zip(units, embedded, strict=True)],
                )
        return True

    # --- endings ---------------------------------------------------------------------------

    def _complete(self, lease: Lease) -> str:
        now = utcnow()
        with self.db.transaction() as session:
            document = session.get(Document, lease.document_id)
            if document is None or document.lease_epoch != lease.epoch:
                raise LeaseLost()
            started = document.processing_started_at or now
            lease.write(
                session.connection(),
                indexing_status=IndexingStatus.COMPLETED.value,
                completed_at=now,
                indexing_latency=(now - started).total_seconds(),
                lease_owner=None,
                due_at=None,
                last_failure=None,
                error=None,
                renewed_at=now,
            )
            signals.send_after_commit(session, signals.document_index_created, document)
        return "completed"

    def _hand_on(self, lease: Lease, generation: int) -> str:
        with self.db.transaction() as session:
            lease.write(session.connection(), lease_owner=None, due_at=utcnow())
            _queue(session, lease.document_id, generation)
        return "continued"

    def _fail(self, lease: Lease, generation: int, message: str) -> str:
        """`error` with the message, and nothing of this generation left behind."""
        now = utcnow()
        with self.db.transaction() as session:
            if not lease.try_write(
                session.connection(),
                indexing_status=IndexingStatus.ERROR.value,
                error=message,
                stopped_at=now,
                lease_owner=None,
                due_at=None,
                completed_segments=0,
                total_segments=0,
            ):
                return "lost"
            _drop_segments(session, lease.document_id, generation)
        logger.info("document %s: error: %s", lease.document_id, message)
        return "error"

    def _retry(self, lease: Lease, generation: int, reason: str) -> str:
        with self.db.transaction() as session:
            attempts = session.scalar(select(_DOCUMENTS.c.attempts).where(lease.guard()))
            if attempts is None:
                return "lost"
        if attempts >= self.settings.max_retries:
            return self._fail(
                lease,
                generation,
                f"Indexing failed {attempts + 1} times in a row; last: {reason}. Re-index the "
                "document once the cause is fixed.",
            )
        delay = random.uniform(
            0, min(self.settings.retry_max, self.settings.retry_base * 2**attempts)
        )
        with self.db.transaction() as session:
            if not lease.try_write(
                session.connection(),
                attempts=attempts + 1,
                last_failure=(f"retry {attempts + 1} of {self.settings.max_retries}: {reason}"),
                lease_owner=None,
                due_at=utcnow() + timedelta(seconds=delay),
            ):
                return "lost"
            _queue(session, lease.document_id, generation, delay=delay)
        logger.info("document %s: retrying in %.1f s: %s", lease.document_id, delay, reason)
        return "retrying"


def _queue(session: Session, document_id: str, generation: int, *, delay: float = 0.0) -> None:
    enqueue(
        session,
        INDEX_TASK,
        queue="dataset",
        kwargs={"document_id": document_id, "generation": generation},
        delay=delay,
    )


def _drop_segments(session: Session, document_id: str, generation: int) -> None:
    """What a generation of a document wrote, for a document that ends in `error`."""
    session.execute(delete(_QA).where(_QA.c.document_id == document_id))
    keywords.remove_document(session, document_id, generation)
    session.execute(
        delete(_SEGMENTS).where(
            _SEGMENTS.c.document_id == document_id, _SEGMENTS.c.generation == generation
        )
    )


def _segment_id() -> str:
    return str(uuid.uuid4())


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RetryableIndexingError):
        return exc.message
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"


def _file_key(session: Session, document: Document) -> str | None:
    file_id = (document.data_source_info or {}).get("upload_file_id")
    if not file_id:
        return None
    return session.scalar(select(UploadFile.key).where(UploadFile.id == str(file_id)))


def _rule(session: Session, document: Document) -> dict[str, Any]:
    if document.dataset_process_rule_id is None:
        return {"mode": "automatic", **AUTOMATIC_RULES}
    found = session.get(DatasetProcessRule, document.dataset_process_rule_id)
    if found is None:
        return {"mode": "automatic", **AUTOMATIC_RULES}
    return {"mode": found.mode.value, **(found.rules or AUTOMATIC_RULES)}


# --- the reaper ------------------------------------------------------------------------------


def resume_stalled_documents(db: Database, settings: RagSettings) -> int:
    """Hand every unfinished document whose holder stopped renewing its lease to a new task
    (or end it in `error` after `max_resumes`); how many were handled."""
    now = utcnow()
    lapsed = now - timedelta(seconds=settings.lease_seconds)
    handled = 0
    with db.transaction() as session:
        stalled = session.execute(
            select(
                _DOCUMENTS.c.id,
                _DOCUMENTS.c.index_generation,
                _DOCUMENTS.c.resumes,
                _DOCUMENTS.c.name,
            )
            .where(
                _DOCUMENTS.c.indexing_status.in_([s.value for s in UNFINISHED]),
                _DOCUMENTS.c.is_paused.is_(False),
                _DOCUMENTS.c.lease_owner.is_not(None),
                _DOCUMENTS.c.renewed_at < lapsed,
            )
            .limit(100)
        ).all()
    for row in stalled:
        with db.transaction() as session:
            still = and_(
                _DOCUMENTS.c.id == row.id,
                _DOCUMENTS.c.lease_owner.is_not(None),
                _DOCUMENTS.c.renewed_at < lapsed,
                _DOCUMENTS.c.indexing_status.not_in(_TERMINAL),
            )
            if row.resumes >= settings.max_resumes:
                moved = (
                    session.connection()
                    .execute(
                        update(_DOCUMENTS)
                        .where(still)
                        .values(
                            indexing_status=IndexingStatus.ERROR.value,
                            error=(
                                f"The worker indexing '{row.name}' stopped {row.resumes + 1} times "
                                "(out of memory, or killed?); the document was given up."
                            ),
                            stopped_at=now,
                            lease_owner=None,
                            completed_segments=0,
                            total_segments=0,
                        )
                    )
                    .rowcount
                )
                if moved:
                    _drop_segments(session, row.id, row.index_generation)
            else:
                moved = (
                    session.connection()
                    .execute(
                        update(_DOCUMENTS)
                        .where(still)
                        .values(
                            resumes=_DOCUMENTS.c.resumes + 1,
                            lease_owner=None,
                            due_at=now,
                            last_failure=(
                                "its worker stopped (its lease lapsed at "
                                f"{lapsed.isoformat(timespec='seconds')}); resumed"
                            ),
                        )
                    )
                    .rowcount
                )
                if moved:
                    _queue(session, row.id, row.index_generation)
            handled += moved
    if handled:
        logger.info("resumed or ended %d stalled document(s)", handled)
    return handled


def build_indexer(resources: Resources, models: ModelRegistry | None = None) -> Indexer:
    """An indexer for this process: the datasets' models behind the embedding cache, the
    splitter on the local model's tokenizer, the data dir's files, and the process's chat
    models (which write Q&A documents' pairs)."""
    settings = resources.settings
    server = "openai_api_compatible" if settings.model.base_url else "local"
    # One slice (parsing included) must end well inside a task's soft time limit.
    budget = settings.tasks.soft_time_limit
    rag = settings.rag.model_copy(
        update={
            "parse_timeout": min(settings.rag.parse_timeout, budget / 2),
            "slice_seconds": min(settings.rag.slice_seconds, budget / 4),
        }
    )
    return Indexer(
        db=resources.db,
        storage=local_storage(settings),
        settings=rag,
        embedders=Embedders(
            secret=settings.secret_key(),
            local=functools.partial(
                LocalEmbedder,
                batch_size=settings.rag.embed_batch,
                threads=settings.rag.embed_threads,
            ),
            wrap=functools.partial(CachedEmbedder, db=resources.db),
            timeout=settings.rag.embed_timeout,
        ),
        splitter=Splitter(tokenizer()),
        worker_id=f"{socket.gethostname()}:{os.getpid()}",
        vectors=build_vector_index(
            resources.db, settings.rag.vector_index, ef_search=settings.rag.hnsw_ef_search
        ),
        chat_models=models,
        server_model=({"provider": server}, settings.model.name),
    )


# --- pausing, resuming and retrying (the console's) ------------------------------------------


def pause_document(session: Session, document: Document, *, account_id: str) -> None:
    """Stop an unfinished document's indexing where it is: the worker holding it writes
    nothing more (its guarded writes need it unpaused) and stops at its next check; the
    servers' resume loop leaves it alone. What is done stays done."""
    if document.indexing_status not in UNFINISHED:
        raise DocumentIndexing("Only a document that is still indexing can be paused.")
    if document.is_paused:
        return
    document.is_paused = True
    document.paused_at = utcnow()
    document.paused_by = account_id
    session.flush()


def resume_document(session: Session, document: Document) -> None:
    """Carry on with a paused document from its first segment not done: a new lease epoch
    (a worker of the old one cannot write) and a task queued with this transaction."""
    if not document.is_paused:
        raise DocumentIndexing("Only a paused document can be resumed.")
    document.is_paused = False
    document.paused_at = None
    document.paused_by = None
    _requeue(session, document)


def retry_documents(session: Session, documents: Sequence[Document]) -> None:
    """Index documents that ended in `error` again, from the start (what their failed run
    wrote was removed with its failure)."""
    for document in documents:
        if document.indexing_status != IndexingStatus.ERROR:
            raise DocumentIndexing(
                f"Document {document.id} did not fail: only a document in error is retried."
            )
    for document in documents:
        document.indexing_status = IndexingStatus.WAITING
        document.error = None
        document.stopped_at = None
        document.processing_started_at = None
        document.parsing_completed_at = None
        document.cleaning_completed_at = None
        document.splitting_completed_at = None
        document.completed_at = None
        document.completed_segments = 0
        document.total_segments = 0
        document.resumes = 0
        _requeue(session, document)


def _requeue(session: Session, document: Document) -> None:
    document.lease_epoch = document.lease_epoch + 1
    document.lease_owner = None
    document.renewed_at = None
    document.due_at = None
    document.attempts = 0
    document.last_failure = None
    session.flush()
    _queue(session, document.id, document.index_generation)
