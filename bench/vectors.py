"""Vector search at scale: latency and recall@10 of each vector index backend, at 10k and 100k
segments in one dataset (another dataset beside it in the same tables).

    .venv/bin/python bench/vectors.py                      # 10k and 100k, every backend (~15 min)
    .venv/bin/python bench/vectors.py --sizes 10000 --backends matrix-sqlite

Backends (`conduit/services/datasets/vectors.py`): `matrix-sqlite` (the embedded mode's: exact
scan of an in-process matrix loaded from the embedding cache), `matrix-pg` (the same on
PostgreSQL), `pgvector` (HNSW, cosine, iterative scan; `--ef` widths). Each size gets a fresh
SQLite file or PostgreSQL database, loaded through the backends' own writes (segments, the
embedding cache, `VectorIndex.add`), then 200 queries run one after another through
`VectorIndex.search` in a read session, as a chat run's retrieval does (top 10).

The vectors are real: the local MiniLM model embeds passages of the Python standard library's
docstrings (cached as .npy under ~/.cache/conduit/bench/). Where the docstrings run out, a
passage is reused with a random word dropped (a near duplicate, as real corpora hold; the model
embeds it anew). The queries are held-out passages. Recall@10 is against exact search (numpy
over the dataset's vectors); the first search after loading (the matrix's load) is reported
apart.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import pydoc
import random
import re
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conduit.core.rag.embed.local import DIMENSION, MODEL_KEY, LocalEmbedder
from conduit.db.migrations import upgrade
from conduit.db.models import (
    Dataset,
    Document,
    DocumentSegment,
    IndexingStatus,
    IndexingTechnique,
    utcnow,
)
from conduit.infra.db import Database, build_engine
from conduit.services.accounts import create_admin
from conduit.services.datasets.vectors import MatrixIndex, VectorIndex, build_vector_index
from conduit.services.embeddings import content_hash, store_vectors

CACHE = Path.home() / ".cache" / "conduit" / "bench"
QUERIES = 200
K = 10
PG = "postgresql://postgres@127.0.0.1:5432/"
LIBRARIES = [
    "numpy",
    "numpy.linalg",
    "numpy.random",
    "numpy.fft",
    "numpy.ma",
    "numpy.polynomial",
    "sqlalchemy",
    "sqlalchemy.orm",
    "sqlalchemy.sql",
    "sqlalchemy.engine",
    "sqlalchemy.dialects.postgresql",
    "celery",
    "celery.app.task",
    "kombu",
    "pydantic",
    "httpx",
    "click",
    "jinja2",
    "fastapi",
    "starlette.requests",
    "aiohttp",
    "aiohttp.web",
    "redis",
    "psycopg",
    "uvicorn",
]
# Standard library modules whose docs are the corpus (none that acts on import: `this`,
# `antigravity`, GUI toolkits).
MODULES = [
    "abc",
    "argparse",
    "array",
    "ast",
    "asyncio",
    "base64",
    "bisect",
    "builtins",
    "bz2",
    "calendar",
    "cmath",
    "codecs",
    "collections",
    "concurrent.futures",
    "configparser",
    "contextlib",
    "copy",
    "csv",
    "ctypes",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "dis",
    "email",
    "enum",
    "filecmp",
    "fnmatch",
    "fractions",
    "ftplib",
    "functools",
    "gc",
    "getopt",
    "gettext",
    "glob",
    "graphlib",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "html.parser",
    "http.client",
    "http.cookies",
    "http.server",
    "imaplib",
    "importlib",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "keyword",
    "linecache",
    "locale",
    "logging",
    "logging.handlers",
    "lzma",
    "mailbox",
    "math",
    "mimetypes",
    "mmap",
    "multiprocessing",
    "netrc",
    "numbers",
    "operator",
    "optparse",
    "os",
    "os.path",
    "pathlib",
    "pickle",
    "pkgutil",
    "platform",
    "plistlib",
    "poplib",
    "pprint",
    "profile",
    "pstats",
    "queue",
    "quopri",
    "random",
    "re",
    "reprlib",
    "sched",
    "secrets",
    "select",
    "selectors",
    "shelve",
    "shlex",
    "shutil",
    "signal",
    "smtplib",
    "socket",
    "socketserver",
    "sqlite3",
    "ssl",
    "stat",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "symtable",
    "sys",
    "sysconfig",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "time",
    "timeit",
    "token",
    "tokenize",
    "trace",
    "traceback",
    "tracemalloc",
    "types",
    "typing",
    "unicodedata",
    "unittest",
    "unittest.mock",
    "urllib.parse",
    "urllib.request",
    "uuid",
    "warnings",
    "wave",
    "weakref",
    "xml.dom",
    "xml.etree.ElementTree",
    "xml.sax",
    "zipfile",
    "zipimport",
    "zlib",
    "zoneinfo",
]


def _sentences() -> list[str]:
    """The sentences of the corpus: the docs of `MODULES`, of a few installed libraries, and
    the language reference's topics, in order."""
    from pydoc_data.topics import topics

    texts = list(topics.values())
    for name in (*MODULES, *LIBRARIES):
        try:
            module = importlib.import_module(name)
            texts.append(pydoc.render_doc(module, renderer=pydoc.plaintext))
        except Exception:
            continue
    found: list[str] = []
    for text in texts:
        for block in re.split(r"\n\s*\n", text):
            block = " ".join(block.split())
            if block.startswith(("|", "-", "=", ">>>")):
                continue
            found.extend(s for s in re.split(r"(?<=[.!?])\s+", block) if 30 <= len(s) <= 300)
    return found


def all_passages() -> list[str]:
    """Every distinct passage: windows of one to four consecutive sentences (so passages
    overlap as a document's chunks do), shuffled the same way on every run."""
    sentences = _sentences()
    seen: dict[str, None] = {}
    for width in (1, 2, 3, 4):
        for start in range(0, len(sentences) - width + 1):
            seen.setdefault(" ".join(sentences[start : start + width]))
    found = [text for text in seen if len(text) <= 400]  # short chunks: the model's cost
    random.Random(11).shuffle(found)
    return found


def embedded(count: int) -> tuple[list[str], np.ndarray]:
    """The first `count` passages and their vectors (cached: a file made for more passages
    serves fewer)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    texts = all_passages()
    if len(texts) < count:
        raise SystemExit(f"the corpus has {len(texts)} passages; {count} were asked for")
    # pydoc's text is not the same from process to process (object addresses in reprs), so a
    # cache is not keyed by it: the vectors are what the search measures, and the texts are
    # only the segments' contents here.
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]
    for path in sorted(CACHE.glob("vectors-*-*.npy")):
        if int(path.name.split("-")[1]) >= count:
            return texts[:count], np.load(path)[:count]
    texts = texts[:count]
    model = LocalEmbedder(batch_size=32)
    started = time.perf_counter()
    # By length, so that a batch pads little (the vectors do not depend on the batch).
    order = sorted(range(count), key=lambda i: len(texts[i]))
    vectors = np.zeros((count, DIMENSION), dtype=np.float32)
    for start in range(0, count, 2048):
        chosen = order[start : start + 2048]
        vectors[chosen] = model.embed([texts[i] for i in chosen]).vectors
        done = min(start + 2048, count)
        print(f"  embedded {done}/{count} ({done / (time.perf_counter() - started):.0f}/s)")
    np.save(CACHE / f"vectors-{count}-{digest}.npy", vectors)
    return texts, vectors


def fresh_database(backend: str, tmp: Path) -> tuple[str, Any]:
    if backend == "matrix-sqlite":
        return f"sqlite:///{tmp / f'vectors-{uuid.uuid4().hex[:8]}.db'}", None
    name = f"bench_vectors_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG + "postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(PG + "postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return PG + name, drop


def load(db: Database, index: VectorIndex, texts: list[str], vectors: np.ndarray) -> str:
    """A workspace and a dataset of one document holding `texts`, indexed; the dataset id."""
    with db.transaction() as session:
        account, tenant, _ = create_admin(
            session, email=f"b{uuid.uuid4().hex[:8]}@bench.local", password="bench-password-1",
            workspace="Bench",
        )  # fmt: skip
        dataset = Dataset(
            tenant_id=tenant.id, name=f"bench {uuid.uuid4().hex[:6]}", created_by=account.id,
            indexing_technique=IndexingTechnique.HIGH_QUALITY,
        )  # fmt: skip
        session.add(dataset)
        session.flush()
        document = Document(
            tenant_id=tenant.id, dataset_id=dataset.id, position=1, batch="b", name="stdlib",
            created_by=account.id, indexing_status=IndexingStatus.COMPLETED,
        )  # fmt: skip
        session.add(document)
        session.flush()
        ids = (tenant.id, account.id, dataset.id, document.id)
    tenant_id, account_id, dataset_id, document_id = ids
    now = utcnow()
    for start in range(0, len(texts), 2000):
        chunk = range(start, min(start + 2000, len(texts)))
        with db.transaction() as session:
            rows = [
                DocumentSegment(
                    id=str(uuid.uuid4()),
                    tenant_id=tenant_id,
                    dataset_id=dataset_id,
                    document_id=document_id,
                    position=i + 1,
                    content=texts[i],
                    word_count=len(texts[i]),
                    status="completed",
                    created_by=account_id,
                    completed_at=now,
                    content_hash=content_hash(texts[i]),
                )
                for i in chunk
            ]
            session.add_all(rows)
            session.flush()
            store_vectors(
                session.connection(),
                MODEL_KEY,
                {content_hash(texts[i]): vectors[i] for i in chunk},
            )
            index.add(
                session, dataset_id, [(r.id, vectors[i]) for r, i in zip(rows, chunk, strict=True)]
            )
    return dataset_id


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure(
    backend: str, size: int, texts: list[str], vectors: np.ndarray, queries: np.ndarray,
    tmp: Path, ef_values: list[int],
) -> list[dict[str, Any]]:  # fmt: skip
    url, drop = fresh_database(backend, tmp)
    results = []
    try:
        upgrade(url)
        db = Database(build_engine(url, pool_size=2, max_overflow=2))
        # As a server builds it: pgvector's table is made before any write.
        index: VectorIndex = (
            MatrixIndex() if backend.startswith("matrix") else build_vector_index(db, "pgvector")
        )
        started = time.perf_counter()
        dataset_id = load(db, index, texts[:size], vectors[:size])
        # A second dataset beside it in the same tables (a tenth of its size).
        other = size // 10
        load(db, index, texts[size : size + other], vectors[size : size + other])
        load_s = time.perf_counter() - started
        with db.reads() as session:
            ids = [
                str(i)
                for (i,) in session.execute(
                    DocumentSegment.__table__.select()
                    .with_only_columns(DocumentSegment.id)
                    .where(DocumentSegment.dataset_id == dataset_id)
                    .order_by(DocumentSegment.position)
                )
            ]
        matrix = vectors[:size]
        truth = [set(np.argsort(-(matrix @ q))[:K].tolist()) for q in queries]
        position = {segment_id: i for i, segment_id in enumerate(ids)}
        for ef in ef_values if backend == "pgvector" else [0]:
            if backend == "pgvector":
                index = build_vector_index(db, "pgvector", ef_search=ef)
            latencies, recalls, first = [], [], None
            for n, (query, expected) in enumerate(zip(queries, truth, strict=True)):
                t0 = time.perf_counter()
                with db.reads() as session:
                    found = index.search(session, dataset_id, MODEL_KEY, query, K)
                elapsed = (time.perf_counter() - t0) * 1000
                if n == 0:
                    first = elapsed
                else:
                    latencies.append(elapsed)
                got = {position[segment_id] for segment_id, _ in found if segment_id in position}
                recalls.append(len(got & expected) / K)
            results.append(
                {
                    "backend": backend + (f" ef={ef}" if backend == "pgvector" else ""),
                    "size": size,
                    "load_s": load_s,
                    "first_ms": first,
                    "p50": statistics.median(latencies),
                    "p99": pct(latencies, 99),
                    "recall": statistics.mean(recalls),
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
    parser.add_argument("--backends", default="matrix-sqlite,matrix-pg,pgvector")
    parser.add_argument("--ef", default="40,100")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    ef_values = [int(e) for e in args.ef.split(",")]
    need = max(sizes) + max(sizes) // 10 + QUERIES
    print(f"passages and vectors: {need}")
    texts, vectors = embedded(need)
    # The queries are the last passages: held out of both datasets.
    queries, corpus_texts, corpus = vectors[-QUERIES:], texts[:-QUERIES], vectors[:-QUERIES]
    tmp = Path("/tmp") / f"bench-vectors-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    rows: list[dict[str, Any]] = []
    for size in sizes:
        for backend in backends:
            print(f"{backend} at {size}")
            rows.extend(measure(backend, size, corpus_texts, corpus, queries, tmp, ef_values))
    import os

    print()
    print(f"load average {os.getloadavg()[0]:.1f}; {QUERIES} queries, top {K}, one at a time")
    print("| backend | segments | load s | first search ms | p50 ms | p99 ms | recall@10 |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['backend']} | {row['size']:,} | {row['load_s']:.0f} | {row['first_ms']:.0f} "
            f"| {row['p50']:.1f} | {row['p99']:.1f} | {row['recall']:.3f} |"
        )


if __name__ == "__main__":
    main()
