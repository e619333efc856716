"""Retrieval by each search method at scale: p50/p99 of a dataset search as a request makes it
(`Retriever.search`: the query embedded by the local model where the method needs it, the
vector and keyword indexes, the availability filter, the segments read), at 10k and 100k
segments in one dataset (another dataset beside it), on each backend.

    .venv/bin/python bench/retrieval.py                    # 10k and 100k, both backends
    .venv/bin/python bench/retrieval.py --sizes 10000 --backends sqlite --methods semantic

Backends: `sqlite` (the embedded mode's: exact in-process matrix + FTS5) and `postgresql`
(pgvector HNSW, ef_search 100 + tsvector/GIN). The passages are `bench/vectors.py`'s (Python
docstrings); their vectors are that bench's cached real ones when present, else random unit
vectors (the table says which): the latency of a search does not depend on what the vectors
mean, and `bench/vectors.py` measures semantic recall with real ones. Queries are eight-word
slices of held-out passages, one at a time, top 10, no threshold.

`--forms text_model,hierarchical_model` also measures a parent-child dataset of the same
passages (each passage a child chunk with its vector, four to a parent segment: the search
asks the children's index and returns parents), beside the plain one in the same run.

    .venv/bin/python bench/retrieval.py --sizes 10000 --methods semantic,hybrid_search\\ \\(w \
        --forms text_model,hierarchical_model
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.vectors import CACHE, all_passages, fresh_database, load, pct
from conduit.core.rag.embed.local import DIMENSION, MODEL_KEY
from conduit.db.migrations import upgrade
from conduit.db.models import (
    ChildChunk,
    Dataset,
    Document,
    DocumentSegment,
    utcnow,
)
from conduit.infra.db import Database, build_engine
from conduit.services.datasets import keywords
from conduit.services.datasets.retrieval import Retriever, retrieval_model
from conduit.services.datasets.vectors import MatrixIndex, VectorIndex, build_vector_index
from conduit.services.embeddings import content_hash, store_vectors

CHILDREN = 4  # child chunks per parent in the parent-child corpus

QUERIES = 100
K = 10
METHODS: list[tuple[str, dict[str, Any]]] = [
    ("semantic_search", {"search_method": "semantic_search"}),
    ("full_text_search", {"search_method": "full_text_search"}),
    ("keyword_search", {"search_method": "keyword_search"}),
    ("hybrid_search (weighted)", {"search_method": "hybrid_search"}),
    (
        "hybrid_search (rrf)",
        {"search_method": "hybrid_search", "reranking_mode": "reciprocal_rank_fusion"},
    ),
]


def vectors_for(count: int) -> tuple[np.ndarray, str]:
    for path in sorted(CACHE.glob("vectors-*-*.npy")):
        if int(path.name.split("-")[1]) >= count:
            return np.load(path)[:count], "real MiniLM vectors"
    rows = np.random.default_rng(7).standard_normal((count, DIMENSION)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows, "random unit vectors"


def index_keywords(db: Database, dataset_id: str) -> None:
    with db.reads() as session:
        rows = session.execute(
            DocumentSegment.__table__.select()
            .with_only_columns(DocumentSegment.id, DocumentSegment.content)
            .where(DocumentSegment.dataset_id == dataset_id)
        ).all()
    for start in range(0, len(rows), 5000):
        with db.transaction() as session:
            keywords.add(
                session, dataset_id, [(r.id, r.content) for r in rows[start : start + 5000]]
            )


def load_parent_child(
    db: Database, index: VectorIndex, texts: list[str], vectors: np.ndarray
) -> str:
    """`load`'s dataset made parent-child: every `CHILDREN` passages one parent segment (their
    text joined), each passage a child chunk with its vector; the dataset id."""
    dataset_id = load(db, index, [], vectors[:0])  # the workspace, dataset and document
    with db.transaction() as session:
        dataset = session.get(Dataset, dataset_id)
        assert dataset is not None
        document = session.scalars(select(Document).where(Document.dataset_id == dataset_id)).one()
        dataset.doc_form = document.doc_form = "hierarchical_model"
        tenant_id, account_id, document_id = dataset.tenant_id, dataset.created_by, document.id
    children = index.children()
    now = utcnow()
    for start in range(0, len(texts), 2000):
        chunk = range(start, min(start + 2000, len(texts)))
        with db.transaction() as session:
            parents: dict[int, DocumentSegment] = {}
            for i in chunk:
                number = i // CHILDREN
                if number in parents:
                    continue
                joined = "\n".join(texts[number * CHILDREN : (number + 1) * CHILDREN])
                parents[number] = DocumentSegment(
                    id=str(uuid.uuid4()),
                    tenant_id=tenant_id,
                    dataset_id=dataset_id,
                    document_id=document_id,
                    position=number + 1,
                    content=joined,
                    word_count=len(joined),
                    status="completed",
                    created_by=account_id,
                    completed_at=now,
                    content_hash=content_hash(joined),
                )
            session.add_all(parents.values())
            session.flush()
            rows = [
                ChildChunk(
                    id=str(uuid.uuid4()),
                    tenant_id=tenant_id,
                    dataset_id=dataset_id,
                    document_id=document_id,
                    segment_id=parents[i // CHILDREN].id,
                    position=i % CHILDREN + 1,
                    content=texts[i],
                    word_count=len(texts[i]),
                    created_by=account_id,
                    content_hash=content_hash(texts[i]),
                )
                for i in chunk
            ]
            session.add_all(rows)
            session.flush()
            store_vectors(
                session.connection(), MODEL_KEY, {content_hash(texts[i]): vectors[i] for i in chunk}
            )
            children.add(
                session, dataset_id, [(r.id, vectors[i]) for r, i in zip(rows, chunk, strict=True)]
            )
    return dataset_id


def measure(
    backend: str,
    size: int,
    texts: list[str],
    vectors: np.ndarray,
    queries: list[str],
    tmp: Path,
    methods: list[tuple[str, dict[str, Any]]],
    form: str = "text_model",
) -> list[dict[str, Any]]:
    url, drop = fresh_database("matrix-sqlite" if backend == "sqlite" else "pgvector", tmp)
    loader = load_parent_child if form == "hierarchical_model" else load
    results: list[dict[str, Any]] = []
    try:
        upgrade(url)
        db = Database(build_engine(url, pool_size=2, max_overflow=2))
        index: VectorIndex = (
            MatrixIndex() if backend == "sqlite" else build_vector_index(db, "pgvector")
        )
        started = time.perf_counter()
        dataset_id = loader(db, index, texts[:size], vectors[:size])
        index_keywords(db, dataset_id)
        other = size // 10
        other_id = loader(db, index, texts[size : size + other], vectors[size : size + other])
        index_keywords(db, other_id)
        load_s = time.perf_counter() - started
        retriever = Retriever.build(index, secret="bench")
        with db.reads() as session:  # the model and the matrix load, apart from the timings
            dataset = session.get(Dataset, dataset_id)
            assert dataset is not None
            retriever.search(session, dataset, "warm up", retrieval_model(dataset, {}))
        for label, override in methods:
            latencies, hits = [], []
            for query in queries:
                t0 = time.perf_counter()
                with db.reads() as session:
                    dataset = session.get(Dataset, dataset_id)
                    assert dataset is not None
                    model = retrieval_model(
                        dataset, {**override, "top_k": K, "score_threshold_enabled": False}
                    )
                    found = retriever.search(session, dataset, query, model)
                    contents = [hit.segment.content for hit in found]
                latencies.append((time.perf_counter() - t0) * 1000)
                hits.append(len(contents))
            results.append(
                {
                    "backend": backend,
                    "size": size,
                    "form": form,
                    "method": label,
                    "load_s": load_s,
                    "p50": statistics.median(latencies),
                    "p99": pct(latencies, 99),
                    "hits": statistics.mean(hits),
                }
            )
            print(f"  {results[-1]}")
        db.dispose()
    finally:
        if drop is not None:
            drop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--methods", default="", help="labels' prefixes (default: every one)")
    parser.add_argument("--forms", default="text_model", help="text_model,hierarchical_model")
    args = parser.parse_args()
    prefixes = [p for p in args.methods.split(",") if p]
    methods = [m for m in METHODS if not prefixes or m[0].startswith(tuple(prefixes))]
    sizes = [int(s) for s in args.sizes.split(",")]
    need = max(sizes) + max(sizes) // 10
    texts = all_passages()
    if len(texts) < need + QUERIES:
        raise SystemExit(f"the corpus has {len(texts)} passages; {need + QUERIES} are needed")
    vectors, kind = vectors_for(need)
    queries = [" ".join(text.split()[:8]) for text in texts[-QUERIES:]]
    tmp = Path("/tmp") / f"bench-retrieval-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    rows: list[dict[str, Any]] = []
    for size in sizes:
        for backend in args.backends.split(","):
            for form in args.forms.split(","):
                print(f"{backend} at {size}, {form}")
                rows.extend(measure(backend, size, texts, vectors, queries, tmp, methods, form))
    print()
    print(
        f"load average {os.getloadavg()[0]:.1f}; {QUERIES} queries, top {K}, one at a time; {kind}"
    )
    print("| backend | passages | form | method | p50 ms | p99 ms | hits |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['backend']} | {row['size']:,} | {row['form']} | {row['method']} "
            f"| {row['p50']:.1f} | {row['p99']:.1f} | {row['hits']:.1f} |"
        )


if __name__ == "__main__":
    main()
