"""Annotation reply: a chat whose question is close enough to one of its app's annotations is
answered with the annotation's answer, without the model (Dify's `annotation_reply`).

What a run looks for is decided when it is planned (its `AnnotationPlan`, carried in its
body); the search itself (`MatchAnnotation`: embed the query, compare it with the app's
annotated questions) is the services layer's, run on the executor before the model call.
Free of I/O.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AnnotationPlan:
    """The app whose annotations a run compares its `query` with, the embedding model that
    made their vectors, and the least cosine similarity that answers (`score_threshold`)."""

    tenant_id: str
    app_id: str
    query: str
    score_threshold: float
    embedding_provider: str
    embedding_model: str

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "app_id": self.app_id,
            "query": self.query,
            "score_threshold": self.score_threshold,
            "embedding_provider": self.embedding_provider,
            "embedding_model": self.embedding_model,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnnotationPlan:
        return cls(
            tenant_id=str(data["tenant_id"]),
            app_id=str(data["app_id"]),
            query=str(data["query"]),
            score_threshold=float(data["score_threshold"]),
            embedding_provider=str(data["embedding_provider"]),
            embedding_model=str(data["embedding_model"]),
        )


@dataclass(frozen=True)
class AnnotationHit:
    """The annotation that answers: its answer, how close its question was, and who wrote it."""

    id: str
    answer: str
    score: float
    account_id: str | None
    account_name: str | None

    def metadata(self) -> dict[str, Any]:
        """Dify's `annotation_reply` of the message's metadata."""
        return {"id": self.id, "account": {"id": self.account_id, "name": self.account_name}}


# The search: the best annotation at or above the plan's threshold, or None.
MatchAnnotation = Callable[[AnnotationPlan], Awaitable[AnnotationHit | None]]

logger = logging.getLogger(__name__)


async def annotated(match: MatchAnnotation | None, plan: AnnotationPlan) -> AnnotationHit | None:
    """The annotation that answers the run, or None: also when the search failed (the model
    answers instead; a reply is a shortcut, never a reason for a run to fail)."""
    if match is None:
        return None
    try:
        return await match(plan)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.warning(
            "annotation reply of app %s failed; the model answers", plan.app_id, exc_info=True
        )
        return None
