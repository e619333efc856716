"""Rerank models (Dify's `reranking_model`): a workspace provider's model served at
`POST {base_url}/rerank` — the Jina / Cohere / Xinference / vLLM shape, `{model, query,
documents, top_n}` answered by `{"results": [{index, relevance_score}]}` — that scores a
search's candidates against the query. A dataset names one in its `retrieval_model`
(`reranking_enable` with `reranking_model: {reranking_provider_name: "workspace:<id>",
reranking_model_name}`, or a hybrid search's `reranking_mode: "reranking_model"`); the choice
is checked against what the workspace offers when it is made and at each search.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import orjson
from sqlalchemy.orm import Session

from conduit.core.llm.errors import ProviderNotConfigured
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
_K = TypeVar("_K")


class RerankFailed(EmbeddingFailed):
    """The rerank model refused or could not be reached: Dify's `completion_request_error`."""

    default_message = "The rerank model failed."


def wanted(model: dict[str, Any]) -> bool:
    """Whether a retrieval model asks for a rerank model, as Dify decides: both names given,
    and `reranking_enable` (a hybrid search: `reranking_mode: reranking_model`); empty names
    mean no rerank."""
    given = model.get("reranking_model")
    if not isinstance(given, dict) or not all(
        isinstance(given.get(key), str) and given.get(key)
        for key in ("reranking_provider_name", "reranking_model_name")
    ):
        return False
    if model.get("search_method") == "hybrid_search":
        return model.get("reranking_mode") == "reranking_model"
    return model.get("reranking_enable") is True


def well_named(given: Any) -> bool:
    """Whether a `reranking_model` has the shape a request may give: absent, or an object of
    strings (its names checked against the workspace where it is used)."""
    return given is None or (
        isinstance(given, dict) and all(isinstance(v, str) for v in given.values())
    )


def choice(model: dict[str, Any]) -> tuple[str, str]:
    """(provider, model name) of a retrieval model's `reranking_model` (`wanted` checked)."""
    given = model["reranking_model"]
    return str(given["reranking_provider_name"]), str(given["reranking_model_name"])


@dataclass(frozen=True, slots=True)
class Target:
    """Where a rerank goes: the provider's endpoint and key, and the model."""

    base_url: str
    api_key: str | None
    model: str


def resolve(
    session: Session,
    tenant_id: str,
    model: dict[str, Any],
    secret: str | None,
    *,
    stored: bool = False,
    field: str = "retrieval_model.reranking_model",
) -> Target:
    """The workspace's rerank model a retrieval model names, or a 400 naming what the
    workspace offers (`secret` None: only checked, the key not read). `stored`: the model is
    a dataset's own, set when it was offered: one gone since is the provider's state
    (`ProviderNotConfigured`), not the request's. `field`: where the request names it."""
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
        kind = ProviderNotConfigured if stored else InvalidParam
        raise kind(
            f"{field} {name!r} of provider {provider!r} is not available: "
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


RESPONSE_MAX = 10 * 1024 * 1024


def rerank(
    target: Target, query: str, documents: list[str], *, timeout: float = TIMEOUT
) -> list[float | None]:
    """Each document's relevance to `query` by the rerank model, in the documents' order, as
    the model gives it (some give logits, some [0, 1]); None for one it left out."""
    if not documents:
        return []
    headers = {"Content-Type": "application/json"}
    if target.api_key:
        headers["Authorization"] = f"Bearer {target.api_key}"
    body = {"model": target.model, "query": query, "documents": documents, "top_n": len(documents)}
    deadline = time.monotonic() + timeout
    try:
        with (
            httpx.Client(timeout=timeout, trust_env=False) as client,
            client.stream(
                "POST", f"{target.base_url}/rerank", content=orjson.dumps(body), headers=headers
            ) as response,
        ):
            content = bytearray()
            for chunk in response.iter_bytes():
                content.extend(chunk)
                if len(content) > RESPONSE_MAX or time.monotonic() > deadline:
                    raise httpx.ReadTimeout("no whole answer in time, or too long an answer")
            status = response.status_code
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeError, ValueError) as error:
        raise RerankFailed(
            f"The rerank model {target.model!r} could not be reached: {type(error).__name__}"
        ) from None
    if status != 200:
        raise RerankFailed(
            f"The rerank model {target.model!r} answered HTTP {status}: "
            f"{bytes(content[:300]).decode('utf-8', 'replace')}"
        )
    try:
        results = orjson.loads(content).get("results")
        scores: list[float | None] = [None] * len(documents)
        for item in results:
            index, score = int(item["index"]), float(item["relevance_score"])
            if not 0 <= index < len(documents) or math.isnan(score):
                raise ValueError(index)
            scores[index] = score
    except (AttributeError, KeyError, TypeError, ValueError, orjson.JSONDecodeError):
        raise RerankFailed(
            f"The rerank model {target.model!r} answered something other than "
            '{"results": [{"index", "relevance_score"}]}.'
        ) from None
    return scores


def normalised(scores: list[float]) -> list[float]:
    """Scores a threshold can compare: kept when all are in [0, 1], else (a model's logits)
    through the logistic function, which keeps their order."""
    if all(0.0 <= score <= 1.0 for score in scores):
        return scores
    return [1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, score)))) for score in scores]


def ordered(target: Target, query: str, items: list[tuple[_K, str]]) -> list[tuple[_K, float]]:
    """`items` (a key and the text the model judges) in the rerank model's order, each with
    its score in [0, 1]; one the model left out goes."""
    raw = rerank(target, query, [text for _, text in items])
    given = [(key, score) for (key, _), score in zip(items, raw, strict=True) if score is not None]
    given.sort(key=lambda pair: -pair[1])  # the model's own order, before any mapping
    scores = normalised([score for _, score in given])
    return [(key, score) for (key, _), score in zip(given, scores, strict=True)]
