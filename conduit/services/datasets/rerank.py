"""Rerank models (Dify's `reranking_model`): a workspace provider's model served at
`POST {base_url}/rerank` — the Jina / Cohere / Xinference / vLLM shape, `{model, query,
documents, top_n}` answered by `{"results": [{index, relevance_score}]}` — that scores a
search's candidates against the query. A dataset names one in its `retrieval_model`
(`reranking_enable` with `reranking_model: {reranking_provider_name: "workspace:<id>",
reranking_model_name}`, or a hybrid search's `reranking_mode: "reranking_model"`); the choice
is checked against what the workspace offers when it is made and at each search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from sqlalchemy.orm import Session

from conduit.db.models import ProviderCredential
from conduit.errors import InvalidParam
from conduit.infra.crypto import DecryptionError, cipher
from conduit.services.datasets.embedders import EmbeddingFailed
from conduit.services.model_providers import (
    WORKSPACE_PREFIX,
    readable_providers,
    workspace_reference,
)

TIMEOUT = 30.0


class RerankFailed(EmbeddingFailed):
    """The rerank model refused or could not be reached: Dify's `completion_request_error`."""

    default_message = "The rerank model failed."


def wanted(model: dict[str, Any]) -> bool:
    """Whether a retrieval model asks for a rerank model."""
    return bool(model.get("reranking_enable")) or model.get("reranking_mode") == "reranking_model"


def choice(model: dict[str, Any]) -> tuple[str, str]:
    """(provider, model name) of a retrieval model's `reranking_model`, both required."""
    given = model.get("reranking_model") or {}
    provider = given.get("reranking_provider_name") if isinstance(given, dict) else None
    name = given.get("reranking_model_name") if isinstance(given, dict) else None
    if not isinstance(provider, str) or not provider or not isinstance(name, str) or not name:
        raise InvalidParam(
            "retrieval_model.reranking_model needs reranking_provider_name and "
            "reranking_model_name (a workspace provider's rerank model)."
        )
    return provider, name


@dataclass(frozen=True, slots=True)
class Target:
    """Where a rerank goes: the provider's endpoint and key, and the model."""

    base_url: str
    api_key: str | None
    model: str


def resolve(session: Session, tenant_id: str, model: dict[str, Any], secret: str | None) -> Target:
    """The workspace's rerank model a retrieval model names, or a 400 naming what the
    workspace offers (`secret` None: only checked, the key not read)."""
    provider, name = choice(model)
    row = None
    if provider.startswith(WORKSPACE_PREFIX):
        row = session.scalars(
            readable_providers(tenant_id).where(
                ProviderCredential.id == provider.removeprefix(WORKSPACE_PREFIX)
            )
        ).first()
    if row is None or name not in (row.rerank_models or []):
        offered = [
            f"{model_name!r} of provider {workspace_reference(found.id)!r}"
            for found in session.scalars(readable_providers(tenant_id))
            for model_name in found.rerank_models or []
        ]
        raise InvalidParam(
            f"retrieval_model.reranking_model {name!r} of provider {provider!r} is not available: "
            + (
                f"this workspace offers {', '.join(offered)}."
                if offered
                else "this workspace has no rerank model (add one to a model provider's "
                "rerank_models)."
            )
        )
    if secret is None or not row.encrypted_api_key:
        return Target(row.base_url.rstrip("/"), None, name)
    try:
        key = cipher(secret).decrypt(row.encrypted_api_key)
    except DecryptionError as error:
        raise RerankFailed(str(error)) from None
    return Target(row.base_url.rstrip("/"), key, name)


def check(session: Session, tenant_id: str, model: dict[str, Any] | None) -> None:
    """A dataset's retrieval model, checked when it is set: its rerank model must exist."""
    if model is not None and wanted(model):
        resolve(session, tenant_id, model, secret=None)


def rerank(
    target: Target, query: str, documents: list[str], *, timeout: float = TIMEOUT
) -> list[float]:
    """Each document's relevance to `query` (in the documents' order, in [0, 1]), by the
    rerank model; one it leaves out scores 0."""
    if not documents:
        return []
    headers = {"Content-Type": "application/json"}
    if target.api_key:
        headers["Authorization"] = f"Bearer {target.api_key}"
    body = {"model": target.model, "query": query, "documents": documents, "top_n": len(documents)}
    try:
        response = httpx.post(
            f"{target.base_url}/rerank",
            content=orjson.dumps(body),
            headers=headers,
            timeout=timeout,
            trust_env=False,
        )
    except httpx.HTTPError as error:
        raise RerankFailed(
            f"The rerank model {target.model!r} could not be reached: {type(error).__name__}"
        ) from None
    if response.status_code != 200:
        raise RerankFailed(
            f"The rerank model {target.model!r} answered HTTP {response.status_code}: "
            f"{response.text[:300]}"
        )
    try:
        results = orjson.loads(response.content).get("results")
        scores = [0.0] * len(documents)
        for item in results:
            index, score = int(item["index"]), float(item["relevance_score"])
            if not 0 <= index < len(documents):
                raise ValueError(index)
            scores[index] = min(1.0, max(0.0, score))  # a threshold is a share of 1
    except (AttributeError, KeyError, TypeError, ValueError, orjson.JSONDecodeError):
        raise RerankFailed(
            f"The rerank model {target.model!r} answered something other than "
            '{"results": [{"index", "relevance_score"}]}.'
        ) from None
    return scores
