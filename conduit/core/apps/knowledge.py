"""Knowledge-backed runs: what a run searches before it asks the model (its `RetrievalPlan`,
decided when the run is planned and carried in its body), the search itself (a `Retrieve`,
which the services layer provides) and how the passages found go into the prompt.

Free of I/O: the plan is data, `with_context` is a pure function of the messages and the
passages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
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


@dataclass(frozen=True)
class RetrievalPlan:
    """The datasets a run searches (its app's, in the app's order; of its workspace), the
    query, how many passages to keep (`top_k`, best first over all the datasets) and the
    lowest score kept (None: no threshold); `show_resources`: whether the run reports them
    (`retriever_resources` in `message_end`); `metadata_conditions`: the app's metadata
    filter (Dify's `metadata_filtering_conditions`, in its manual mode)."""

    tenant_id: str
    dataset_ids: tuple[str, ...]
    query: str
    top_k: int
    score_threshold: float | None = None
    show_resources: bool = True
    metadata_conditions: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "dataset_ids": list(self.dataset_ids),
            "query": self.query,
            "top_k": self.top_k,
            "score_threshold": self.score_threshold,
            "show_resources": self.show_resources,
            "metadata_conditions": self.metadata_conditions,
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
