"""A completed document's segments edited one by one (Dify's segment routes): added, read,
changed, enabled or disabled, deleted.

Each edit is one transaction that keeps everything a search reads in step: the segment row,
its vector in the embedding cache (embedded before the writes, by the dataset's model), its
keyword-index row and the document's counters. A document still indexing refuses edits (its
segments are the indexer's until it completes), as does a disabled one.

A parent-child document's (`hierarchical_model`) segments are parents: a new one is cut into
child chunks by the document's rule, and its children are embedded instead of it; a changed
one keeps its children unless `regenerate_child_chunks` asks for new ones. Its child chunks
are edited one by one too (Dify's child chunk routes), each change embedded and indexed in
its transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from conduit.core.rag.embed.base import Embedder
from conduit.core.rag.errors import IndexingError
from conduit.core.rag.split import Splitter
from conduit.db.models import (
    ChildChunk,
    Dataset,
    DatasetProcessRule,
    Document,
    DocumentSegment,
    IndexingStatus,
    IndexingTechnique,
    ProcessMode,
    utcnow,
)
from conduit.errors import InvalidParam, NotFound
from conduit.services._like import contains
from conduit.services.datasets import keywords
from conduit.services.datasets.documents import (
    HIERARCHICAL_MODEL,
    HIERARCHICAL_RULES,
    QA_MODEL,
    get_document,
    parent_child_rule,
)
from conduit.services.datasets.embedders import EmbeddingFailed
from conduit.services.datasets.vectors import VectorIndex
from conduit.services.embeddings import content_hash, store_vectors

SEGMENT_NOT_FOUND = "Segment not found."
CHILD_CHUNK_NOT_FOUND = "Child chunk not found."
MAX_SEGMENTS = 100  # per request
CONTENT_MAX = 100_000  # characters of one segment


@dataclass(frozen=True)
class SegmentModel:
    """What segment edits need of the dataset's embedding model: the model itself (its
    vectors go to the cache under its key), its token count of a text, and the vector index
    the vectors go into."""

    embedder: Embedder
    count_tokens: Callable[[str], int]
    index: VectorIndex
    splitter: Splitter


def editable_document(session: Session, dataset: Dataset, document_id: str) -> Document:
    """The document, locked for this transaction (PostgreSQL; SQLite's write lock is held
    already), when its segments may change: Dify's 404s otherwise."""
    document = get_document(session, dataset, document_id)
    if session.get_bind().dialect.name == "postgresql":
        session.refresh(document, with_for_update=True)
    if document.indexing_status != IndexingStatus.COMPLETED:
        raise NotFound("Document is not completed.")
    if not document.enabled:
        raise NotFound("Document is disabled.")
    return document


def check_answers(document: Document, items: list[SegmentFields], *, creating: bool) -> None:
    """A Q&A document's segment is a question (its content) with its answer: one added needs
    both (Dify's "Answer is required"), a change may not empty the answer."""
    if document.doc_form != QA_MODEL:
        return
    for index, item in enumerate(items):
        where = f"segments[{index}]" if creating else "segment"
        if (creating or item.answer is not None) and not (item.answer or "").strip():
            raise InvalidParam(
                f"{where}.answer is required: this is a qa_model document, whose segments are "
                "questions (content) with their answers."
            )


def get_segment(session: Session, document: Document, segment_id: str) -> DocumentSegment:
    try:
        uuid.UUID(segment_id)
    except ValueError:
        raise NotFound(SEGMENT_NOT_FOUND) from None
    found = session.scalars(
        select(DocumentSegment).where(
            DocumentSegment.id == segment_id,
            DocumentSegment.document_id == document.id,
            DocumentSegment.generation == document.index_generation,
        )
    ).first()
    if found is None:
        raise NotFound(SEGMENT_NOT_FOUND)
    return found


@dataclass(frozen=True)
class SegmentFields:
    """One segment's fields from a request, checked (None: not given)."""

    content: str | None = None
    answer: str | None = None
    keywords: list[str] | None = None
    enabled: bool | None = None
    regenerate_child_chunks: bool = False

    @classmethod
    def parse(cls, value: Any, where: str, *, creating: bool) -> SegmentFields:
        if not isinstance(value, dict):
            raise InvalidParam(f"{where} must be an object.")
        content = value.get("content")
        if content is not None or creating:
            if not isinstance(content, str) or not content.strip():
                raise InvalidParam(f"{where}.content is required.")
            if len(content) > CONTENT_MAX:
                raise InvalidParam(f"{where}.content must be at most {CONTENT_MAX} characters.")
        answer = value.get("answer")
        if answer is not None and not isinstance(answer, str):
            raise InvalidParam(f"{where}.answer must be a string.")
        words = value.get("keywords")
        if words is not None and (
            not isinstance(words, list) or not all(isinstance(w, str) for w in words)
        ):
            raise InvalidParam(f"{where}.keywords must be a list of strings.")
        enabled = value.get("enabled")
        if enabled is not None and not isinstance(enabled, bool):
            raise InvalidParam(f"{where}.enabled must be a boolean.")
        regenerate = value.get("regenerate_child_chunks", False)
        if not isinstance(regenerate, bool):
            raise InvalidParam(f"{where}.regenerate_child_chunks must be a boolean.")
        return cls(
            content=content.strip() if isinstance(content, str) else None,
            answer=answer,
            keywords=[w.strip() for w in words if w.strip()] if words is not None else None,
            enabled=enabled,
            regenerate_child_chunks=regenerate,
        )


def parse_new_segments(body: dict[str, Any]) -> list[SegmentFields]:
    items = body.get("segments")
    if not isinstance(items, list) or not items:
        raise InvalidParam("segments is required: a list of {content, answer?, keywords?}.")
    if len(items) > MAX_SEGMENTS:
        raise InvalidParam(f"segments: at most {MAX_SEGMENTS} per request.")
    return [
        SegmentFields.parse(item, f"segments[{index}]", creating=True)
        for index, item in enumerate(items)
    ]


Vectors = dict[str, Any]  # text hash → vector


def embed_texts(
    dataset: Dataset, model: SegmentModel, texts: list[str], *, children: bool = False
) -> Vectors:
    """The vectors of a high-quality dataset's new texts, by text hash (none for an economy
    dataset). Only computes: called outside any transaction, so that on SQLite the model does
    not run while the write lock is held; the edit then stores them. `children`: the texts are
    child chunks (their index is the one made ready for the vectors' width)."""
    if dataset.indexing_technique != IndexingTechnique.HIGH_QUALITY or not texts:
        return {}
    try:
        vectors = model.embedder.embed(texts).vectors
    except IndexingError as error:  # a remote model down or refusing: Dify's model error
        raise EmbeddingFailed(f"The segment could not be embedded: {error.message}") from None
    index = model.index.children() if children else model.index
    index.prepare(int(vectors.shape[1]))  # before the edit's transaction (see `prepare`)
    return {content_hash(text): vector for text, vector in zip(texts, vectors, strict=True)}


def _store(
    session: Session, dataset: Dataset, model: SegmentModel, vectors: Vectors,
    rows: Sequence[DocumentSegment] | Sequence[ChildChunk],
) -> None:  # fmt: skip
    """The vectors of segments (or of child chunks) into the cache and the vector index, in
    this transaction; one that `embed_texts` did not give is embedded now."""
    if dataset.indexing_technique != IndexingTechnique.HIGH_QUALITY or not rows:
        return
    children = isinstance(rows[0], ChildChunk)
    missing = [row.content for row in rows if row.content_hash not in vectors]
    vectors = {**vectors, **embed_texts(dataset, model, missing, children=children)}
    store_vectors(session.connection(), model.embedder.model_key, vectors)
    index = model.index.children() if children else model.index
    index.add(session, dataset.id, [(row.id, vectors[row.content_hash]) for row in rows])


def plan_children(
    session: Session, document: Document, model: SegmentModel, contents: Sequence[str]
) -> list[list[str]] | None:
    """The child chunks that parents with `contents` get by the document's rule (None: not
    a parent-child document). Only computes: the edit writes them."""
    if document.doc_form != HIERARCHICAL_MODEL:
        return None
    rule = (
        session.get(DatasetProcessRule, document.dataset_process_rule_id)
        if document.dataset_process_rule_id
        else None
    )
    rules = rule.rules if rule is not None and rule.mode == ProcessMode.HIERARCHICAL else None
    child = parent_child_rule(rules or HIERARCHICAL_RULES).child
    return [model.splitter.split(content, child) or [content] for content in contents]


def texts_to_embed(contents: Sequence[str], children: list[list[str]] | None) -> list[str]:
    """What an edit embeds: the segments' texts, or a parent-child document's children's."""
    if children is None:
        return list(contents)
    return [kid for kids in children for kid in kids]


def _new_children(
    session: Session, segment: DocumentSegment, texts: Sequence[str], *, account_id: str,
    first_position: int = 1, kind: str = "automatic",
) -> list[ChildChunk]:  # fmt: skip
    now = utcnow()
    made = []
    for position, text in enumerate(texts, start=first_position):
        chunk_id = str(uuid.uuid4())
        digest = content_hash(text)
        made.append(
            ChildChunk(
                id=chunk_id,
                tenant_id=segment.tenant_id,
                dataset_id=segment.dataset_id,
                document_id=segment.document_id,
                segment_id=segment.id,
                position=position,
                content=text,
                word_count=len(text),
                index_node_id=chunk_id,
                index_node_hash=digest,
                type=kind,
                created_by=account_id,
                created_at=now,
                updated_at=now,
                content_hash=digest,
            )
        )
    session.add_all(made)
    session.flush()
    return made


def add_segments(
    session: Session,
    dataset: Dataset,
    document: Document,
    items: list[SegmentFields],
    model: SegmentModel,
    *,
    account_id: str,
    vectors: Vectors | None = None,
    children: list[list[str]] | None = None,
) -> list[DocumentSegment]:
    """Append segments to a completed document, searchable when this transaction commits
    (`vectors`: their texts' from `embed_texts`; `children`: a parent-child document's child
    chunks of each, from `plan_children`)."""
    texts = [item.content or "" for item in items]
    # Only a Q&A document's segments have answers (as in Dify: elsewhere one given is ignored).
    answers = [item.answer if document.doc_form == QA_MODEL else None for item in items]
    last = session.scalar(
        select(func.max(DocumentSegment.position)).where(
            DocumentSegment.document_id == document.id,
            DocumentSegment.generation == document.index_generation,
        )
    )
    now = utcnow()
    made: list[DocumentSegment] = []
    for offset, (item, text, answer) in enumerate(zip(items, texts, answers, strict=True), 1):
        segment_id = str(uuid.uuid4())
        digest = content_hash(text)
        made.append(
            DocumentSegment(
                id=segment_id,
                tenant_id=document.tenant_id,
                dataset_id=dataset.id,
                document_id=document.id,
                position=(last or 0) + offset,
                content=text,
                answer=answer,
                keywords=item.keywords,
                word_count=len(text) + len(answer or ""),
                tokens=model.count_tokens(text) + model.count_tokens(answer or ""),
                index_node_id=segment_id,
                index_node_hash=digest,
                status="completed",
                created_by=account_id,
                created_at=now,
                updated_at=now,
                indexing_at=now,
                completed_at=now,
                generation=document.index_generation,
                content_hash=digest,
                hit_count=0,
                enabled=True,
            )
        )
    session.add_all(made)
    session.flush()
    if children is None:
        _store(session, dataset, model, vectors or {}, made)
    else:
        kids = [
            chunk
            for segment, texts in zip(made, children, strict=True)
            for chunk in _new_children(session, segment, texts, account_id=account_id)
        ]
        _store(session, dataset, model, vectors or {}, kids)
    keywords.add(session, dataset.id, [(s.id, s.content) for s in made])
    _count(document, segments=len(made), words=sum(s.word_count for s in made),
           tokens=sum(s.tokens for s in made))  # fmt: skip
    return made


def update_segment(
    session: Session,
    dataset: Dataset,
    document: Document,
    segment: DocumentSegment,
    fields: SegmentFields,
    model: SegmentModel,
    *,
    account_id: str,
    vectors: Vectors | None = None,
    children: list[str] | None = None,
) -> DocumentSegment:
    """Change a segment: new content is embedded (`vectors`: from `embed_texts`) and
    re-indexed; `enabled` takes it into or out of search. A parent-child document's segment
    is not embedded: `children` (from `plan_children`, for `regenerate_child_chunks`) replace
    its child chunks."""
    now = utcnow()
    parent = document.doc_form == HIERARCHICAL_MODEL
    if children is not None:
        session.execute(delete(ChildChunk).where(ChildChunk.segment_id == segment.id))
        kids = _new_children(session, segment, children, account_id=account_id)
        _store(session, dataset, model, vectors or {}, kids)
        segment.completed_at = now
    if fields.content is not None and fields.content != segment.content:
        words, tokens = segment.word_count, segment.tokens
        segment.content = fields.content
        segment.content_hash = segment.index_node_hash = content_hash(fields.content)
        segment.word_count = len(fields.content) + len(segment.answer or "")
        segment.tokens = model.count_tokens(fields.content) + model.count_tokens(
            segment.answer or ""
        )
        segment.completed_at = now  # the dataset's vectors reload on their next search
        if not parent:
            _store(session, dataset, model, vectors or {}, [segment])
        keywords.remove_segments(session, [segment.id])
        keywords.add(session, dataset.id, [(segment.id, segment.content)])
        _count(document, segments=0, words=segment.word_count - words,
               tokens=segment.tokens - tokens)  # fmt: skip
    qa = document.doc_form == QA_MODEL
    if qa and fields.answer is not None and fields.answer != segment.answer:
        words = len(fields.answer) - len(segment.answer or "")
        tokens = model.count_tokens(fields.answer) - model.count_tokens(segment.answer or "")
        segment.answer = fields.answer
        segment.word_count += words
        segment.tokens += tokens
        _count(document, segments=0, words=words, tokens=tokens)
    if fields.keywords is not None:
        segment.keywords = fields.keywords
    if fields.enabled is not None and fields.enabled != segment.enabled:
        segment.enabled = fields.enabled
        segment.disabled_at = None if fields.enabled else now
        segment.disabled_by = None if fields.enabled else account_id
        document.updated_at = now
    segment.updated_by = account_id
    segment.updated_at = now
    session.flush()
    return segment


def delete_segment(session: Session, document: Document, segment: DocumentSegment) -> None:
    keywords.remove_segments(session, [segment.id])
    _count(document, segments=-1, words=-segment.word_count, tokens=-segment.tokens)
    session.delete(segment)
    session.flush()


def _count(document: Document, *, segments: int, words: int, tokens: int) -> None:
    document.total_segments = (document.total_segments or 0) + segments
    document.completed_segments = (document.completed_segments or 0) + segments
    document.word_count = (document.word_count or 0) + words
    document.tokens = (document.tokens or 0) + tokens
    document.updated_at = utcnow()


# --- child chunks (a parent-child document's) ------------------------------------------------


def parent_document(document: Document) -> Document:
    """The document, when it has child chunks (Dify's parent-child form); else a 400."""
    if document.doc_form != HIERARCHICAL_MODEL:
        raise InvalidParam(
            "Child chunks belong to hierarchical_model (parent-child) documents; this "
            f"document's doc_form is {document.doc_form}."
        )
    return document


def parse_child_content(body: dict[str, Any]) -> str:
    content = body.get("content")
    if not isinstance(content, str) or not content.strip():
        raise InvalidParam("content is required.")
    if len(content) > CONTENT_MAX:
        raise InvalidParam(f"content must be at most {CONTENT_MAX} characters.")
    return content.strip()


def get_child(session: Session, segment: DocumentSegment, chunk_id: str) -> ChildChunk:
    try:
        uuid.UUID(chunk_id)
    except ValueError:
        raise NotFound(CHILD_CHUNK_NOT_FOUND) from None
    found = session.scalars(
        select(ChildChunk).where(ChildChunk.id == chunk_id, ChildChunk.segment_id == segment.id)
    ).first()
    if found is None:
        raise NotFound(CHILD_CHUNK_NOT_FOUND)
    return found


def list_children(
    session: Session, segment: DocumentSegment, *, page: int, limit: int, keyword: str | None
) -> tuple[list[ChildChunk], int]:
    query = select(ChildChunk).where(ChildChunk.segment_id == segment.id)
    if keyword:
        query = query.where(contains(ChildChunk.content, keyword))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(
        query.order_by(ChildChunk.position).offset((page - 1) * limit).limit(limit)
    )
    return list(items), int(total)


def add_child(
    session: Session, dataset: Dataset, segment: DocumentSegment, content: str,
    model: SegmentModel, *, account_id: str, vectors: Vectors | None = None,
) -> ChildChunk:  # fmt: skip
    """A child chunk written by hand (`customized`), last of its segment's, searchable when
    this transaction commits."""
    last = session.scalar(
        select(func.max(ChildChunk.position)).where(ChildChunk.segment_id == segment.id)
    )
    [made] = _new_children(
        session, segment, [content], account_id=account_id,
        first_position=(last or 0) + 1, kind="customized",
    )  # fmt: skip
    _store(session, dataset, model, vectors or {}, [made])
    segment.updated_at = utcnow()
    session.flush()
    return made


def update_child(
    session: Session, dataset: Dataset, segment: DocumentSegment, chunk: ChildChunk,
    content: str, model: SegmentModel, *, account_id: str, vectors: Vectors | None = None,
) -> ChildChunk:  # fmt: skip
    """New text for a child chunk (now `customized`), embedded and re-indexed."""
    now = utcnow()
    if content != chunk.content:
        chunk.content = content
        chunk.content_hash = chunk.index_node_hash = content_hash(content)
        chunk.word_count = len(content)
        chunk.type = "customized"
        _store(session, dataset, model, vectors or {}, [chunk])
    chunk.updated_by = account_id
    chunk.updated_at = now
    segment.updated_at = now
    session.flush()
    return chunk


def delete_child(session: Session, segment: DocumentSegment, chunk: ChildChunk) -> None:
    """Remove a child chunk (its vector goes with it)."""
    session.delete(chunk)
    segment.updated_at = utcnow()
    session.flush()
