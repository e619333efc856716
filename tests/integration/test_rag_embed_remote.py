"""An OpenAI-compatible embedding endpoint (`conduit/core/rag/embed/openai_compatible.py`)
against the fake model server over real HTTP: order, normalisation, the learned dimension, and
which failures are worth retrying."""

from __future__ import annotations

import numpy as np
import pytest

from conduit.core.rag.embed.base import EmbeddingRejected, EmbeddingUnavailable
from conduit.core.rag.embed.openai_compatible import OpenAICompatibleEmbedder
from tests.fakes.fake_openai import FakeOpenAIThread, hashed_vector


def embedder(fake: FakeOpenAIThread, **options: object) -> OpenAICompatibleEmbedder:
    return OpenAICompatibleEmbedder(
        provider="fake-provider",
        base_url=fake.base_url,
        model="text-embedding-fake",
        **options,  # type: ignore[arg-type]
    )


class TestEmbeddings:
    def test_rows_follow_the_inputs_whatever_order_the_server_lists(
        self, fake: FakeOpenAIThread
    ) -> None:
        texts = ["alpha beta", "gamma", "delta epsilon zeta", "eta"]
        result = embedder(fake, batch_size=3).embed(texts)
        expected = np.array([hashed_vector(t, 64) for t in texts], dtype=np.float32)
        assert np.allclose(result.vectors, expected, atol=1e-6)
        assert result.tokens == 7
        assert [len(r["messages"]) for r in fake.stats()["log"]] == [3, 1]  # two batches

    def test_the_dimension_is_learned_and_a_changed_one_refused(
        self, fake: FakeOpenAIThread
    ) -> None:
        model = embedder(fake)
        assert model.dimension is None
        model.embed(["x"])
        assert model.dimension == 64
        assert model.model_key == "fake-provider:text-embedding-fake"
        pinned = embedder(fake, dimension=1536)
        with pytest.raises(EmbeddingRejected, match=r"64-dimensional vectors where 1536"):
            pinned.embed(["x"])

    def test_the_api_key_is_sent(self, fake: FakeOpenAIThread) -> None:
        fake.control(api_key="sk-right")
        embedder(fake, api_key="sk-right").embed(["x"])
        with pytest.raises(EmbeddingRejected, match=r"refused the request with 401: Incorrect API"):
            embedder(fake, api_key="sk-wrong").embed(["x"])

    @pytest.mark.parametrize("status", [429, 500, 502, 503])
    def test_overload_and_server_errors_are_retryable(
        self, fake: FakeOpenAIThread, status: int
    ) -> None:
        fake.control(f"status-{status}")
        with pytest.raises(EmbeddingUnavailable, match=f"answered {status}") as raised:
            embedder(fake).embed(["x"])
        assert raised.value.retryable
        assert "text-embedding-fake" in raised.value.message

    @pytest.mark.parametrize("status", [400, 403, 404])
    def test_other_refusals_are_fatal(self, fake: FakeOpenAIThread, status: int) -> None:
        fake.control(f"status-{status}")
        with pytest.raises(EmbeddingRejected, match=f"with {status}") as raised:
            embedder(fake).embed(["x"])
        assert not raised.value.retryable

    def test_a_hanging_server_times_out_as_retryable(self, fake: FakeOpenAIThread) -> None:
        fake.control("hang-before-headers")
        with pytest.raises(EmbeddingUnavailable, match=r"did not answer in time"):
            embedder(fake, timeout=0.3).embed(["x"])

    def test_an_unreachable_server_is_retryable(self) -> None:
        model = OpenAICompatibleEmbedder(
            provider="gone", base_url="http://127.0.0.1:9/v1", model="m", timeout=2
        )
        with pytest.raises(EmbeddingUnavailable, match=r"could not be reached"):
            model.embed(["x"])
