"""The embedding cache (`conduit/services/embeddings.py`) in front of a real HTTP embedding
endpoint (the fake model server) and the test database of the mode: text embedded once is
never sent again, by the same embedder or a new one, and a different model never reads it."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import delete, func, select

from conduit.core.rag.embed.base import EmbeddingUnavailable
from conduit.core.rag.embed.openai_compatible import OpenAICompatibleEmbedder
from conduit.db.models import CachedEmbedding
from conduit.infra.db import Database
from conduit.services.embeddings import CachedEmbedder
from tests.fakes.fake_openai import FakeOpenAIThread, hashed_vector


@pytest.fixture
def clean_cache(db: Database) -> Database:
    with db.transaction() as session:
        session.execute(delete(CachedEmbedding))
    return db


def cached(fake: FakeOpenAIThread, db: Database, model: str = "embed-a") -> CachedEmbedder:
    remote = OpenAICompatibleEmbedder(provider="fake", base_url=fake.base_url, model=model)
    return CachedEmbedder(remote, db)


def sent(fake: FakeOpenAIThread) -> list[list[str]]:
    return [[m["content"] for m in r["messages"]] for r in fake.stats()["log"]]


class TestEmbeddingCache:
    def test_each_distinct_text_is_sent_once_and_repeats_are_read_back(
        self, fake: FakeOpenAIThread, clean_cache: Database
    ) -> None:
        texts = ["red fox", "blue whale", "red fox", "green frog"]
        first = cached(fake, clean_cache).embed(texts)
        assert sent(fake) == [["red fox", "blue whale", "green frog"]]
        assert first.tokens == 6
        expected = np.array([hashed_vector(t, 64) for t in texts], dtype=np.float32)
        assert np.allclose(first.vectors, expected, atol=1e-6)

        again = cached(fake, clean_cache).embed(["green frog", "new text", "red fox"])
        assert sent(fake)[1:] == [["new text"]]
        assert again.tokens == 2
        assert np.allclose(again.vectors[0], first.vectors[3])
        assert np.allclose(again.vectors[2], first.vectors[0])

        whole = cached(fake, clean_cache).embed(texts)
        assert len(sent(fake)) == 2  # nothing sent: all cached
        assert whole.tokens == 0
        assert np.array_equal(whole.vectors, first.vectors)

    def test_another_model_never_reads_these_vectors(
        self, fake: FakeOpenAIThread, clean_cache: Database
    ) -> None:
        cached(fake, clean_cache, "embed-a").embed(["same text"])
        cached(fake, clean_cache, "embed-b").embed(["same text"])
        assert len(sent(fake)) == 2
        with clean_cache.transaction() as session:
            keys = session.scalars(select(CachedEmbedding.model_key)).all()
        assert sorted(keys) == ["fake:embed-a", "fake:embed-b"]

    def test_a_failed_call_stores_nothing(
        self, fake: FakeOpenAIThread, clean_cache: Database
    ) -> None:
        fake.control("status-503")
        with pytest.raises(EmbeddingUnavailable):
            cached(fake, clean_cache).embed(["lost"])
        with clean_cache.transaction() as session:
            assert session.scalar(select(func.count()).select_from(CachedEmbedding)) == 0
        assert cached(fake, clean_cache).embed(["lost"]).tokens == 1

    def test_a_row_stored_meanwhile_by_another_indexer_is_not_an_error(
        self, fake: FakeOpenAIThread, clean_cache: Database
    ) -> None:
        one, other = cached(fake, clean_cache), cached(fake, clean_cache)
        one._store({"0" * 64: np.ones(64, dtype=np.float32)})
        other._store({"0" * 64: np.ones(64, dtype=np.float32), "1" * 64: np.ones(64, np.float32)})
        with clean_cache.transaction() as session:
            assert session.scalar(select(func.count()).select_from(CachedEmbedding)) == 2
