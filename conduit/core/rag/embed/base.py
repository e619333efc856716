"""The `Embedder` protocol and its two errors.

An embedder is synchronous: indexing calls it on a task's thread, a query through
`asyncio.to_thread` (onnxruntime, tokenizers and httpx's socket reads release the GIL). Its
rows are L2-normalised float32, so a dot product is the cosine similarity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from conduit.core.rag.errors import FatalIndexingError, RetryableIndexingError

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Embedded:
    vectors: Vectors  # one unit row per text, in order
    tokens: int  # what the model read (billed tokens for a remote model)


class Embedder(Protocol):
    # Names the model and its exact weights: a vector is only comparable with vectors of the
    # same key (the embedding cache and a dataset's index are keyed by it).
    @property
    def model_key(self) -> str: ...

    # The vectors' length, once known (a remote model's is learned from its first answer).
    @property
    def dimension(self) -> int | None: ...

    # Tokens the model reads of one text (the rest is cut off), if it says.
    @property
    def max_tokens(self) -> int | None: ...

    def embed(self, texts: Sequence[str]) -> Embedded: ...


class EmbeddingUnavailable(RetryableIndexingError):
    """The model could not answer now (connection, timeout, 429, 5xx): try again later."""


class EmbeddingRejected(FatalIndexingError):
    """The model refused the request (bad credentials, unknown model, bad input)."""


def normalise(vectors: npt.NDArray[np.floating]) -> Vectors:
    rows = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit: Vectors = rows / np.maximum(norms, np.float32(1e-12))
    return unit
