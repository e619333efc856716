"""Any OpenAI-compatible `POST {base_url}/embeddings` (OpenAI, vLLM, Ollama, LiteLLM, TEI...).

Synchronous httpx: indexing calls it on a task's thread and a query through
`asyncio.to_thread`. The vector length is learned from the first answer unless given, and a
later answer of another length is refused: vectors of two lengths cannot share an index.
Connection errors, timeouts, 408, 429 and 5xx are `EmbeddingUnavailable` (retry later); any
other refusal is `EmbeddingRejected`, naming the provider, the status and what it said.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from conduit.core.rag.embed.base import (
    Embedded,
    EmbeddingRejected,
    EmbeddingUnavailable,
    normalise,
)

_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
_MAX_MESSAGE = 300


class OpenAICompatibleEmbedder:
    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        model: str,
        api_key: str | None = None,
        dimension: int | None = None,
        batch_size: int = 64,
        timeout: float = 30.0,
        client: httpx.Client | None = None,
    ) -> None:
        self._provider = provider
        self._url = base_url.rstrip("/") + "/embeddings"
        self._model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._dimension = dimension
        self._batch_size = batch_size
        self._client = client or httpx.Client(timeout=timeout)

    @property
    def model_key(self) -> str:
        return f"{self._provider}:{self._model}"

    @property
    def dimension(self) -> int | None:
        return self._dimension

    @property
    def max_tokens(self) -> int | None:
        return None

    def close(self) -> None:
        self._client.close()

    def embed(self, texts: Sequence[str]) -> Embedded:
        if not texts:
            return Embedded(np.zeros((0, self._dimension or 0), dtype=np.float32), 0)
        parts = []
        tokens = 0
        for start in range(0, len(texts), self._batch_size):
            batch = list(texts[start : start + self._batch_size])
            rows, used = self._call(batch)
            parts.append(rows)
            tokens += used
        return Embedded(normalise(np.concatenate(parts)), tokens)

    def _call(self, batch: list[str]) -> tuple[np.ndarray[Any, Any], int]:
        where = f"the embedding model {self._model!r} of {self._provider}"
        try:
            response = self._client.post(
                self._url, json={"model": self._model, "input": batch}, headers=self._headers
            )
        except httpx.TimeoutException as exc:
            raise EmbeddingUnavailable(f"{where} did not answer in time ({exc!r})") from exc
        except httpx.TransportError as exc:
            raise EmbeddingUnavailable(f"{where} could not be reached ({exc!r})") from exc
        if response.status_code >= 500 or response.status_code in _RETRYABLE_STATUS:
            raise EmbeddingUnavailable(
                f"{where} answered {response.status_code}: {_said(response)}"
            )
        if response.status_code >= 400:
            raise EmbeddingRejected(
                f"{where} refused the request with {response.status_code}: {_said(response)}"
            )
        try:
            body = response.json()
            data = sorted(body["data"], key=lambda item: item["index"])
            rows = np.array([item["embedding"] for item in data], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingRejected(
                f"{where} answered something that is not embeddings: "
                f"{response.text[:_MAX_MESSAGE]!r}"
            ) from exc
        if rows.ndim != 2 or rows.shape[0] != len(batch):
            raise EmbeddingRejected(
                f"{where} returned {rows.shape[0] if rows.ndim else 0} vectors for "
                f"{len(batch)} texts"
            )
        if self._dimension is None:
            self._dimension = int(rows.shape[1])
        elif rows.shape[1] != self._dimension:
            raise EmbeddingRejected(
                f"{where} returned {rows.shape[1]}-dimensional vectors where "
                f"{self._dimension} were expected: a changed model needs a re-index"
            )
        usage = body.get("usage") or {}
        return rows, int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0)


def _said(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:_MAX_MESSAGE] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:_MAX_MESSAGE]
    if isinstance(error, str):
        return error[:_MAX_MESSAGE]
    return response.text[:_MAX_MESSAGE]
