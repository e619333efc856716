"""Searching a dataset: the query embedded by the dataset's model, compared with the vectors of
its available segments (completed, enabled documents and segments), best first.

A parent-child dataset (`hierarchical_model`) is searched by its child chunks: the nearest
children, each parent scored by its best child, the parents returned with the children that
matched (Dify's retrieve record's `child_chunks`); its keyword index holds the parents.

`semantic_search` asks the process's vector index (`vectors.py`: exact in-process matrices,
or pgvector) for candidates and keeps the available ones. `full_text_search` and
`keyword_search` read the keyword index (`keywords.py`); `hybrid_search` weighs the two
lists' similarities (`retrieval_model.weights`, 0.7 / 0.3 by default).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from conduit.core.apps.knowledge import (
    RERANKING_MODEL,
    WEIGHTED_SCORE,
    Reranking,
    RetrievalPlan,
)
from conduit.core.rag.embed.base import Embedder
from conduit.core.rag.embed.local import LocalEmbedder, tokenizer
from conduit.core.rag.errors import IndexingError
from conduit.core.rag.retrieve import fuse_rrf, fuse_weighted
from conduit.core.rag.split import Splitter
from conduit.db.models import (
    ChildChunk,
    Dataset,
    Document,
    DocumentSegment,
    IndexingTechnique,
)
from conduit.errors import InvalidParam, NotFound
from conduit.infra.db import Database
from conduit.infra.ssrf import AllowList
from conduit.services.datasets import external, keywords, metadata, rerank
from conduit.services.datasets.datasets import (
    RERANKING_MODES,
    SEARCH_METHODS,
    TOP_K_MAX,
    check_reranking_mode,
    default_retrieval_model,
)
from conduit.services.datasets.documents import HIERARCHICAL_MODEL, segment_view
from conduit.services.datasets.embedders import Embedders, EmbeddingFailed
from conduit.services.datasets.external import ExternalKnowledge
from conduit.services.datasets.segments import SegmentModel
from conduit.services.datasets.vectors import VectorIndex, is_searchable

logger = logging.getLogger(__name__)

QUERY_MAX = 250  # Dify's hit-testing limit on the query's length
# `retrieval_model.reranking_mode` of a hybrid search fused by rank (Conduit's; Dify's modes are
# `weighted_score`, the default here, and `reranking_model`, which needs a rerank model).
RRF_MODE = RERANKING_MODES[1]


@dataclass(frozen=True, slots=True)
class Hit:
    """A segment a search found, its document, its score, and (a parent-child dataset's)
    the child chunks that matched, best first, with theirs."""

    segment: DocumentSegment
    document: Document
    score: float
    children: tuple[tuple[ChildChunk, float], ...] = ()


@dataclass
class Retriever:
    """One per process: the datasets' query embedders (the local one loaded on the first
    search) and the vector index."""

    embedders: Embedders
    index: VectorIndex
    # External datasets' services (`external.py`), and the secret their keys are sealed with.
    external: ExternalKnowledge = field(default_factory=lambda: ExternalKnowledge(AllowList()))
    secret: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _splitter: Splitter | None = None

    def segment_model(self, session: Session, dataset: Dataset) -> SegmentModel:
        """The dataset's model as segment edits use it: its vectors and its token counts."""
        return SegmentModel(
            self._embedder(session, dataset), self._count_tokens, self.index, self._splitter_()
        )

    def _embedder(self, session: Session, dataset: Dataset) -> Embedder:
        if dataset.indexing_technique != IndexingTechnique.HIGH_QUALITY:
            return self.embedders.local_model()  # (an economy dataset embeds nothing)
        return self.embedders.for_dataset(session, dataset)

    def _splitter_(self) -> Splitter:
        with self._lock:
            if self._splitter is None:
                self._splitter = Splitter(tokenizer())
            return self._splitter

    def _count_tokens(self, text: str) -> int:
        return self._splitter_().count(text)

    @classmethod
    def build(
        cls,
        index: VectorIndex,
        *,
        secret: str,
        threads: int = 0,
        timeout: float = 30.0,
        allow: AllowList | None = None,
    ) -> Retriever:
        # Queries are not cached: they rarely repeat, and the search runs inside the request's
        # transaction, which on SQLite holds the write lock a cache write would wait for.
        embedders = Embedders(
            secret=secret,
            local=functools.partial(LocalEmbedder, threads=threads, spin=False),
            timeout=timeout,
        )
        return cls(
            embedders=embedders,
            index=index,
            external=ExternalKnowledge(allow or AllowList()),
            secret=secret,
        )

    def search(
        self, session: Session, dataset: Dataset, query: str, model: dict[str, Any]
    ) -> list[Hit]:
        """Dify's search methods: `semantic_search` (by meaning), `full_text_search` and
        `keyword_search` (the keyword index), `hybrid_search` (both, weighted)."""
        method = model["search_method"]
        embedded = dataset.indexing_technique == IndexingTechnique.HIGH_QUALITY
        if method in ("semantic_search", "hybrid_search") and not embedded:
            raise InvalidParam(
                f"retrieval_model.search_method {method!r} needs embeddings, which this dataset "
                "does not have (economy indexing): use keyword_search or full_text_search."
            )
        top_k = model["top_k"]
        pool = top_k * 4  # room for what the availability filter drops, and for the fusion
        # A rerank model named but not offered is refused before anything runs.
        reranker = (
            rerank.resolve(
                session, dataset.tenant_id, model, self.secret,
                stored=_same_reranker(model, dataset.retrieval_model),
            )
            if rerank.wanted(model)
            else None
        )  # fmt: skip
        # Dify's metadata filter: the documents whose values pass it (None: no filter).
        only = metadata.filtered_documents(
            session, dataset, model.get("metadata_filtering_conditions")
        )
        if only is not None and not only:
            return []
        parents = dataset.doc_form == HIERARCHICAL_MODEL
        matched: dict[str, list[tuple[str, int, float]]] = {}  # segment → (child, position, score)
        semantic = (
            # A parent has several children: more of them, for `top_k` parents.
            self._semantic(
                session, dataset, query, pool * 4 if parents else pool, only, children=parents
            )
            if method in ("semantic_search", "hybrid_search")
            else []
        )
        if parents and semantic:
            semantic = _by_parent(session, semantic, matched, limit=pool)
        keyword = (
            keywords.search(session, dataset.id, query, pool, only)
            if method in ("full_text_search", "keyword_search", "hybrid_search")
            else []
        )
        if method == "hybrid_search" and model.get("reranking_mode") == RRF_MODE:
            ranked = fuse_rrf(semantic, keyword)
        elif method == "hybrid_search":
            weights = model.get("weights") or {}
            ranked = fuse_weighted(
                semantic,
                keyword,
                semantic_weight=float(
                    (weights.get("vector_setting") or {}).get("vector_weight", 0.7)
                ),
                keyword_weight=float(
                    (weights.get("keyword_setting") or {}).get("keyword_weight", 0.3)
                ),
            )
        else:
            ranked = semantic or keyword
        threshold = model["score_threshold"] if model.get("score_threshold_enabled") else None
        if reranker is None:  # (with a rerank model, the threshold is on its scores)
            ranked = [(i, s) for i, s in ranked if threshold is None or s >= threshold]
        if not ranked:
            return []
        # By primary key, then checked here (`is_searchable` says why not in SQL).
        segments = session.scalars(
            select(DocumentSegment).where(DocumentSegment.id.in_([i for i, _ in ranked]))
        ).all()
        documents = {
            document.id: document
            for document in session.scalars(
                select(Document).where(Document.id.in_({s.document_id for s in segments}))
            )
        }
        rows = {
            segment.id: (segment, document)
            for segment in segments
            if (document := documents.get(segment.document_id)) is not None
            and is_searchable(segment, document, dataset.id)
            and (only is None or document.id in only)
        }
        candidates = [(i, score) for i, score in ranked if i in rows]
        if reranker is not None and candidates:
            candidates = self._reranked(
                session, reranker, query, candidates[: top_k * 2], rows, matched
            )
            candidates = [(i, s) for i, s in candidates if threshold is None or s >= threshold]
        kept = candidates[:top_k]
        children = _children(session, [c for i, _ in kept for c, _, _ in matched.get(i, ())])
        return [
            Hit(
                *rows[i],
                score,
                tuple((children[c], s) for c, _, s in matched.get(i, ()) if c in children),
            )
            for i, score in kept
        ]

    def _reranked(
        self,
        session: Session,
        reranker: rerank.Target,
        query: str,
        candidates: list[tuple[str, float]],
        rows: dict[str, tuple[DocumentSegment, Document]],
        matched: dict[str, list[tuple[str, int, float]]],
    ) -> list[tuple[str, float]]:
        """The candidates in the rerank model's order, scored by it (in [0, 1]); one it left
        out goes. A parent-child dataset's parent is judged by its best child's text (what the
        search matched; a whole parent can be longer than the model reads), one matched by
        keywords only by its own first `RERANK_CHARS` characters."""
        children = _children(
            session, [kids[0][0] for i, _ in candidates if (kids := matched.get(i))]
        )
        texts = []
        for i, _ in candidates:
            kids = matched.get(i)
            best = children.get(kids[0][0]) if kids else None
            texts.append(
                best.content if best is not None else passage_text(rows[i][0])[:RERANK_CHARS]
            )
        return rerank.ordered(
            reranker, query, [(i, text) for (i, _), text in zip(candidates, texts, strict=True)]
        )

    def _semantic(
        self,
        session: Session,
        dataset: Dataset,
        query: str,
        limit: int,
        document_ids: set[str] | None,
        *,
        children: bool = False,
    ) -> list[tuple[str, float]]:
        embedder = self.embedders.for_dataset(session, dataset)
        try:
            vector = embedder.embed([query]).vectors[0]
        except IndexingError as error:  # a remote model down or refusing: Dify's model error
            raise EmbeddingFailed(f"The query could not be embedded: {error.message}") from None
        index = self.index.children() if children else self.index
        return index.search(session, dataset.id, embedder.model_key, vector, limit, document_ids)


def _same_reranker(model: dict[str, Any], stored: dict[str, Any] | None) -> bool:
    """Whether a search's rerank model is the dataset's own (not a request's override)."""
    return bool(stored) and model.get("reranking_model") == (stored or {}).get("reranking_model")


def _by_parent(
    session: Session,
    found: list[tuple[str, float]],
    matched: dict[str, list[tuple[str, int, float]]],
    *,
    limit: int,
) -> list[tuple[str, float]]:
    """Child chunks' ids and scores → the ids of their segments, each scored by its best
    child, best first, at most `limit`; `matched` gets each of those segments' children (id,
    position, score), best first. A child deleted since the index was read is left out. (Ids
    only: the children's text is read for the hits that are kept, `_children`.)"""
    scores = dict(found)
    grouped: dict[str, list[tuple[str, int, float]]] = {}
    for child_id, segment_id, position in session.execute(
        select(ChildChunk.id, ChildChunk.segment_id, ChildChunk.position).where(
            ChildChunk.id.in_(list(scores))
        )
    ).tuples():
        grouped.setdefault(segment_id, []).append((child_id, position, scores[child_id]))
    for children in grouped.values():
        children.sort(key=lambda child: (-child[2], child[1]))
    ranked = sorted(
        ((segment_id, children[0][2]) for segment_id, children in grouped.items()),
        key=lambda pair: (-pair[1], pair[0]),
    )[:limit]
    matched.update((segment_id, grouped[segment_id]) for segment_id, _ in ranked)
    return ranked


def _children(session: Session, ids: list[str]) -> dict[str, ChildChunk]:
    if not ids:
        return {}
    return {c.id: c for c in session.scalars(select(ChildChunk).where(ChildChunk.id.in_(ids)))}


def retrieval_model(dataset: Dataset, override: Any) -> dict[str, Any]:
    """The request's `retrieval_model` over the dataset's (over Dify's defaults), checked."""
    model = {**default_retrieval_model(), **(dataset.retrieval_model or {})}
    if override is None:
        return model
    if not isinstance(override, dict):
        raise InvalidParam("retrieval_model must be an object.")
    merged = {**model, **override}
    if merged.get("search_method") not in SEARCH_METHODS:
        raise InvalidParam(
            f"retrieval_model.search_method must be one of: {', '.join(SEARCH_METHODS)}."
        )
    top_k = merged.get("top_k")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= TOP_K_MAX:
        raise InvalidParam(f"retrieval_model.top_k must be an integer from 1 to {TOP_K_MAX}.")
    threshold = merged.get("score_threshold")
    if threshold is not None and (
        not isinstance(threshold, int | float)
        or isinstance(threshold, bool)
        or not 0 <= threshold <= 1
    ):
        raise InvalidParam("retrieval_model.score_threshold must be a number from 0 to 1.")
    for flag in ("score_threshold_enabled", "reranking_enable"):
        if not isinstance(merged.get(flag, False), bool):
            raise InvalidParam(f"retrieval_model.{flag} must be a boolean.")
    if not rerank.well_named(merged.get("reranking_model")):
        raise InvalidParam(
            "retrieval_model.reranking_model must be {reranking_provider_name, "
            "reranking_model_name} (strings)."
        )
    check_reranking_mode(override.get("reranking_mode"))
    return merged


def check_query(query: Any) -> str:
    if not isinstance(query, str) or not query.strip():
        raise InvalidParam("query is required.")
    if len(query) > QUERY_MAX:
        raise InvalidParam(f"query must be at most {QUERY_MAX} characters.")
    return query


def record(hit: Hit) -> dict[str, Any]:
    """Dify's retrieve record."""
    segment, document = hit.segment, hit.document
    return {
        "segment": {
            **segment_view(segment),
            "document": {
                "id": document.id,
                "data_source_type": document.data_source_type,
                "name": document.name,
                "doc_type": document.doc_type,
                "doc_metadata": document.doc_metadata,
            },
        },
        "child_chunks": [
            {
                "id": chunk.id,
                "content": chunk.content,
                "position": chunk.position,
                "score": round(score, 6),
            }
            for chunk, score in hit.children
        ],
        "score": round(hit.score, 6),
        "tsne_position": None,
        "files": [],
        "summary": None,
    }


class KnowledgeSearch:
    """The search of knowledge-backed runs (`core/apps/knowledge.py:Retrieve`): each of the
    plan's datasets searched with its own retrieval model (`top_k` and the threshold from the
    app; an economy dataset by keywords), the best passages over all of them, as Dify's
    `RetrieverResource` objects. The plan's `reranking` orders them together: a rerank model
    judges all the datasets' passages at once (each dataset's own rerank model then left
    out), or every dataset is scored by the same weights of meaning and keywords. On a
    thread, in a session that only reads (on SQLite it does not wait for the write lock);
    no session waits on a service or a rerank model."""

    def __init__(self, db: Database, retriever: Retriever) -> None:
        self._db = db
        self._retriever = retriever
        self._secret = retriever.secret

    async def __call__(self, plan: RetrievalPlan) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.search, plan)

    def search(self, plan: RetrievalPlan) -> list[dict[str, Any]]:
        """The plan's datasets searched, the best passages over all of them first (each as
        a `RetrieverResource` without its position), numbered from 1. An external dataset's
        service is asked after the session ends (no transaction waits on it); one that fails
        is left out with a warning, as Dify does: the run answers from the others."""
        # (score, passage, the text a rerank model judges) of every dataset's passages.
        found: list[tuple[float, dict[str, Any], str]] = []
        # (id, name, `external_retrieval_model`, where to ask) of each external dataset.
        remote: list[tuple[str, str, dict[str, Any], external.Source]] = []
        ranking = plan.reranking
        target: rerank.Target | None = None
        with self._db.reads() as session:
            if ranking is not None and ranking.mode == RERANKING_MODEL:
                # Checked when the app was configured: one gone since is the provider's state.
                target = rerank.resolve(
                    session, plan.tenant_id, reranker_model(ranking), self._secret,
                    stored=True, field="The rerank model",
                )  # fmt: skip
            datasets = {
                dataset.id: dataset
                for dataset in session.scalars(
                    select(Dataset).where(
                        Dataset.tenant_id == plan.tenant_id, Dataset.id.in_(plan.dataset_ids)
                    )
                )
            }
            for dataset_id in plan.dataset_ids:
                dataset = datasets.get(dataset_id)
                if dataset is None:
                    continue  # deleted since the app was configured
                if dataset.provider == external.EXTERNAL:
                    try:
                        where = external.source(session, dataset, self._secret)
                        setting = external.parse_setting(None, dataset.retrieval_model)
                        remote.append((dataset.id, dataset.name, setting, where))
                    except (NotFound, external.ExternalKnowledgeFailed) as error:
                        logger.warning(
                            "external dataset %s left out of a run's passages: %s",
                            dataset.id, error,
                        )  # fmt: skip
                    continue
                model = app_retrieval_model(dataset, plan)
                try:
                    hits = self._retriever.search(session, dataset, plan.query, model)
                except InvalidParam:
                    # The app's metadata filter names a field this dataset lacks: none of its
                    # documents pass it.
                    if plan.metadata_conditions is None:
                        raise
                    continue
                # A weighted score's keywords-only dataset: its share of the weights.
                scale = (
                    ranking.keyword_weight
                    if ranking is not None
                    and ranking.mode == WEIGHTED_SCORE
                    and model["search_method"] != "hybrid_search"
                    else 1.0
                )
                # Read before the session ends (its rollback expires what it loaded).
                found.extend(
                    (
                        hit.score * scale,
                        resource(0, dataset, hit.segment, hit.document, hit.score * scale),
                        judged_text(hit),
                    )
                    for hit in hits
                )
        for dataset_id, name, setting, where in remote:
            try:
                records = self._retriever.external.search(
                    where, plan.query, setting, plan.metadata_conditions
                )
            except (external.ExternalKnowledgeFailed, InvalidParam) as error:
                logger.warning(
                    "external dataset %s left out of a run's passages: %s", dataset_id, error
                )
                continue
            found.extend(
                (r["score"], external.resource(0, dataset_id, name, r), r["content"][:RERANK_CHARS])
                for r in records
            )
        if target is not None and found:
            judged = rerank.ordered(
                target, plan.query, [(index, text) for index, (_, _, text) in enumerate(found)]
            )
            found = [
                (score, {**found[index][1], "score": round(score, 6)}, "")
                for index, score in judged
            ]
        else:
            found.sort(key=lambda item: -item[0])
        threshold = plan.score_threshold
        kept = [passage for score, passage, _ in found if threshold is None or score >= threshold]
        return [
            {**passage, "position": position}
            for position, passage in enumerate(kept[: plan.top_k], start=1)
        ]


# What a rerank model reads of a passage at most (a whole parent can be longer than it reads).
RERANK_CHARS = 2000


def judged_text(hit: Hit) -> str:
    """What a rerank model judges of a hit: its best matched child chunk (what the search
    matched, in a parent-child dataset), else its own first characters (a Q&A segment's
    question and answer)."""
    if hit.children:
        return hit.children[0][0].content
    return passage_text(hit.segment)[:RERANK_CHARS]


def passage_text(segment: DocumentSegment) -> str:
    """A segment's text as a run's prompt and its `retriever_resources` give it: a Q&A
    segment's question with its answer (as Dify writes them), else its content."""
    if segment.answer:
        return f"question: {segment.content}\nanswer: {segment.answer}"
    return segment.content


def reranker_model(ranking: Reranking) -> dict[str, Any]:
    """A plan's rerank model as a retrieval model names one (for `rerank.resolve`)."""
    return {
        "reranking_model": {
            "reranking_provider_name": ranking.provider,
            "reranking_model_name": ranking.model,
        }
    }


def app_retrieval_model(dataset: Dataset, plan: RetrievalPlan) -> dict[str, Any]:
    """How an app's run searches `dataset`: the dataset's method (keywords where an economy
    dataset has no embeddings), the app's `top_k` and threshold. Under the app's rerank model
    the dataset's own rerank model and the threshold are left out (the app's model scores the
    passages, and its threshold is on those scores); under a weighted score an embedded
    dataset is searched both ways with the app's weights."""
    model = {**default_retrieval_model(), **(dataset.retrieval_model or {})}
    embedded = dataset.indexing_technique == IndexingTechnique.HIGH_QUALITY
    if not embedded and model.get("search_method") in ("semantic_search", "hybrid_search"):
        model["search_method"] = "keyword_search"
    ranking = plan.reranking
    threshold = plan.score_threshold
    if ranking is not None:
        model["reranking_enable"] = False
        model["reranking_model"] = None
        if ranking.mode == WEIGHTED_SCORE and embedded:
            model["search_method"] = "hybrid_search"
            model["reranking_mode"] = WEIGHTED_SCORE
            model["weights"] = {
                "vector_setting": {"vector_weight": ranking.vector_weight},
                "keyword_setting": {"keyword_weight": ranking.keyword_weight},
            }
        else:
            threshold = None  # (applied to the scores the passages are ordered by)
    model["top_k"] = min(plan.top_k, TOP_K_MAX)
    model["score_threshold_enabled"] = threshold is not None
    model["score_threshold"] = threshold or 0.0
    model["metadata_filtering_conditions"] = plan.metadata_conditions
    return model


def resource(
    position: int, dataset: Dataset, segment: DocumentSegment, document: Document, score: float
) -> dict[str, Any]:
    """Dify's `RetrieverResource`: a passage a run used, with where it comes from."""
    return {
        "position": position,
        "dataset_id": dataset.id,
        "dataset_name": dataset.name,
        "document_id": document.id,
        "document_name": document.name,
        "data_source_type": document.data_source_type,
        "segment_id": segment.id,
        "retriever_from": "api",
        "score": round(score, 6),
        "hit_count": segment.hit_count,
        "word_count": segment.word_count,
        "segment_position": segment.position,
        "index_node_hash": segment.index_node_hash,
        "content": passage_text(segment),
        "created_at": int(segment.created_at.timestamp()),
    }


def record_hits(db: Database, segment_ids: list[str]) -> None:
    """The segments were used by a run: each one's `hit_count` grows by one."""
    with db.transaction() as session:
        session.execute(
            update(DocumentSegment)
            .where(DocumentSegment.id.in_(segment_ids))
            # A hit is no change of the segment: `updated_at` stays (in-memory vectors too).
            .values(hit_count=DocumentSegment.hit_count + 1, updated_at=DocumentSegment.updated_at)
            .execution_options(synchronize_session=False)
        )
