"""Embedding through the cache: a text embedded once by a model is never sent to it again.

`CachedEmbedder` wraps any `Embedder`: it reads the vectors it has (one query per 500 texts),
asks the model only for the texts it lacks (each distinct text once, however often it repeats),
and stores the new vectors in one statement that ignores rows another indexer stored meanwhile.
It is called on an indexing task's thread or through `asyncio.to_thread`, never on the loop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from sqlalchemy import Connection, Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from conduit.core.rag.embed.base import Embedded, Embedder, Vectors
from conduit.db.models import CachedEmbedding, utcnow
from conduit.infra.db import Database

_READ_CHUNK = 500
_TABLE: Table = CachedEmbedding.__table__  # type: ignore[assignment]


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CachedEmbedder:
    def __init__(self, embedder: Embedder, db: Database) -> None:
        self._embedder = embedder
        self._db = db

    @property
    def model_key(self) -> str:
        return self._embedder.model_key

    @property
    def dimension(self) -> int | None:
        return self._embedder.dimension

    @property
    def max_tokens(self) -> int | None:
        return self._embedder.max_tokens

    def embed(self, texts: Sequence[str]) -> Embedded:
        """Like the wrapped embedder's; `tokens` counts only what the model read now."""
        if not texts:
            return self._embedder.embed(texts)
        hashes = [content_hash(text) for text in texts]
        known = self._cached(sorted(set(hashes)))
        missing: dict[str, str] = {}
        for digest, text in zip(hashes, texts, strict=True):
            if digest not in known:
                missing.setdefault(digest, text)
        tokens = 0
        if missing:
            fresh = self._embedder.embed(list(missing.values()))
            tokens = fresh.tokens
            new = dict(zip(missing, fresh.vectors, strict=True))
            self._store(new)
            known.update(new)
        rows: Vectors = np.stack([known[digest] for digest in hashes]).astype(np.float32)
        return Embedded(rows, tokens)

    def _cached(self, hashes: list[str]) -> dict[str, Vectors]:
        found: dict[str, Vectors] = {}
        with self._db.statements() as connection:
            for start in range(0, len(hashes), _READ_CHUNK):
                chunk = hashes[start : start + _READ_CHUNK]
                rows = connection.execute(
                    select(_TABLE.c.content_hash, _TABLE.c.vector).where(
                        _TABLE.c.model_key == self.model_key, _TABLE.c.content_hash.in_(chunk)
                    )
                )
                for digest, blob in rows:
                    found[digest] = np.frombuffer(blob, dtype=np.float32)
        return found

    def _store(self, vectors: dict[str, Vectors]) -> None:
        with self._db.statements() as connection:
            store_vectors(connection, self.model_key, vectors)


def store_vectors(connection: Connection, model_key: str, vectors: dict[str, Vectors]) -> None:
    """Put vectors (by text hash) into the cache, in the caller's transaction; rows already
    there (another indexer's) are left as they are."""
    if not vectors:
        return
    now = utcnow()
    rows = [
        {
            "model_key": model_key,
            "content_hash": digest,
            "dimension": int(vector.shape[0]),
            "vector": np.ascontiguousarray(vector, dtype=np.float32).tobytes(),
            "created_at": now,
        }
        for digest, vector in vectors.items()
    ]
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    connection.execute(insert(_TABLE).on_conflict_do_nothing(), rows)
