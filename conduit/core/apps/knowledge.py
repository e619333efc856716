"""Knowledge-backed runs: what a run searches before it asks the model (its `RetrievalPlan`,
decided when the run is planned and carried in its body), the search itself (a `Retrieve`,
which the services layer provides) and how the passages found go into the prompt.

Free of I/O: the plan is data, `with_context` is a pure function of the messages and the
passages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conduit.core.llm.errors import ModelError
from conduit.core.llm.provider import ChatMessage

# Where a prompt names its context; without it the context goes ahead of the system prompt.
CONTEXT_PLACEHOLDER = "{{#context#}}"
# The passages' share of the prompt, in characters (about 1.5k tokens: a small local model's
# window keeps room for the instructions, the history and the answer).
CONTEXT_CHARS = 6000

_INSTRUCTIONS = (
    "Answer with the knowledge in the passages inside <context></context> below. If they do "
    "not hold the answer, say that you do not know instead of inventing one. Do not mention "
    "the passages or these tags in the answer."
)


RERANKING_MODEL = "reranking_model"
WEIGHTED_SCORE = "weighted_score"
# Dify's weighted score when an app gives no weights (a hybrid search's defaults too).
VECTOR_WEIGHT = 0.7
KEYWORD_WEIGHT = 0.3


@dataclass(frozen=True)
class Reranking:
    """How the passages of all the plan's datasets are ordered together (Dify's multiple
    retrieval's `reranking_mode`): by a rerank model (`provider`, `model`), or by one
    weighted score of meaning and keywords in every dataset (`vector_weight`,
    `keyword_weight`)."""

    mode: str
    provider: str = ""
    model: str = ""
    vector_weight: float = VECTOR_WEIGHT
    keyword_weight: float = KEYWORD_WEIGHT

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "provider": self.provider,
            "model": self.model,
            "vector_weight": self.vector_weight,
            "keyword_weight": self.keyword_weight,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reranking:
        return cls(
            mode=str(data["mode"]),
            provider=str(data.get("provider") or ""),
            model=str(data.get("model") or ""),
            vector_weight=float(data.get("vector_weight", VECTOR_WEIGHT)),
            keyword_weight=float(data.get("keyword_weight", KEYWORD_WEIGHT)),
        )


def reranking(config: Mapping[str, Any]) -> Reranking | None:
    """The reranking an app's `dataset_configs` or a knowledge-retrieval node's
    `multiple_retrieval_config` asks for, or None (the passages ordered by their own scores).
    On unless `reranking_enable` (as Dify's front end writes it) or `reranking_enabled` (as its
    back end reads it) is false. `reranking_mode` `reranking_model` (the default) needs both
    names of `reranking_model` (`reranking_provider_name` and `reranking_model_name`, or a
    node's `provider` and `model`; empty names are no rerank, as in Dify); `weighted_score`
    takes `weights` (`vector_setting.vector_weight`, `keyword_setting.keyword_weight`; Dify's
    0.7 and 0.3 where missing or not a weight)."""
    if any(_off(config.get(key)) for key in ("reranking_enable", "reranking_enabled")):
        return None
    mode = config.get("reranking_mode") or RERANKING_MODEL
    if mode == WEIGHTED_SCORE:
        weights = _mapping(config.get("weights"))
        return Reranking(
            mode,
            vector_weight=_weight(
                _mapping(weights.get("vector_setting")).get("vector_weight"), VECTOR_WEIGHT
            ),
            keyword_weight=_weight(
                _mapping(weights.get("keyword_setting")).get("keyword_weight"), KEYWORD_WEIGHT
            ),
        )
    given = _mapping(config.get("reranking_model"))
    provider = given.get("reranking_provider_name", given.get("provider"))
    model = given.get("reranking_model_name", given.get("model"))
    if mode != RERANKING_MODEL or not (
        isinstance(provider, str) and provider and isinstance(model, str) and model
    ):
        return None
    return Reranking(mode, provider=provider, model=model)


def _off(flag: Any) -> bool:
    """A switch turned off as Dify's models read one (`false`, `0`, or their strings, which a
    hand-written graph may hold)."""
    if isinstance(flag, str):
        return flag.strip().lower() in ("false", "0")
    return flag is not None and not isinstance(flag, dict | list) and flag == 0


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _weight(value: Any, default: float) -> float:
    """A weight in [0, 1] (one stored before it was checked, or missing: the default)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return default


@dataclass(frozen=True)
class RetrievalPlan:
    """The datasets a run searches (its app's, in the app's order; of its workspace), the
    query, how many passages to keep (`top_k`, best first over all the datasets) and the
    lowest score kept (None: no threshold); `show_resources`: whether the run reports them
    (`retriever_resources` in `message_end`); `metadata_conditions`: the app's metadata
    filter (Dify's `metadata_filtering_conditions`, in its manual mode); `reranking`: how the
    datasets' passages are ordered together (None: by their own scores)."""

    tenant_id: str
    dataset_ids: tuple[str, ...]
    query: str
    top_k: int
    score_threshold: float | None = None
    show_resources: bool = True
    metadata_conditions: dict[str, Any] | None = None
    reranking: Reranking | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "dataset_ids": list(self.dataset_ids),
            "query": self.query,
            "top_k": self.top_k,
            "score_threshold": self.score_threshold,
            "show_resources": self.show_resources,
            "metadata_conditions": self.metadata_conditions,
            "reranking": None if self.reranking is None else self.reranking.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RetrievalPlan:
        threshold = data.get("score_threshold")
        return cls(
            tenant_id=str(data["tenant_id"]),
            dataset_ids=tuple(str(i) for i in data["dataset_ids"]),
            query=str(data["query"]),
            top_k=int(data["top_k"]),
            score_threshold=None if threshold is None else float(threshold),
            show_resources=bool(data.get("show_resources", True)),
            metadata_conditions=data.get("metadata_conditions"),
            reranking=Reranking.from_json(data["reranking"]) if data.get("reranking") else None,
        )


# The search: Dify's `RetrieverResource` objects, best first, each with its `content`.
Retrieve = Callable[[RetrievalPlan], Awaitable[list[dict[str, Any]]]]


class KnowledgeRetrievalFailed(ModelError):
    """The search before the model call failed: the run ends with Dify's model error code."""

    default_message = "Knowledge retrieval failed."


def context_text(resources: Sequence[dict[str, Any]], budget: int = CONTEXT_CHARS) -> str:
    """The passages' contents, best first, separated by blank lines, within `budget`
    characters (the passage that crosses it is cut; those after it are left out)."""
    parts: list[str] = []
    left = budget
    for resource in resources:
        content = str(resource.get("content") or "").strip()
        if not content:
            continue
        if len(content) > left:
            if left > 0 and not parts:
                parts.append(content[:left])
            break
        parts.append(content)
        left -= len(content) + 2
    return "\n\n".join(parts)


def with_context(
    messages: Sequence[ChatMessage], resources: Sequence[dict[str, Any]]
) -> list[ChatMessage]:
    """The prompt with the passages found: in place of `{{#context#}}` where the prompt
    names it (empty when nothing was found), else as a block ahead of the system prompt (a
    system message of its own when there is none). Nothing found and no placeholder: the
    prompt as it was."""
    context = context_text(resources)
    placed = [
        ChatMessage(m.role, m.content.replace(CONTEXT_PLACEHOLDER, context))
        if CONTEXT_PLACEHOLDER in m.content
        else m
        for m in messages
    ]
    if any(CONTEXT_PLACEHOLDER in m.content for m in messages) or not context:
        return placed
    block = f"{_INSTRUCTIONS}\n\n<context>\n{context}\n</context>"
    if placed and placed[0].role == "system":
        return [ChatMessage("system", f"{block}\n\n{placed[0].content}"), *placed[1:]]
    return [ChatMessage("system", block), *placed]
