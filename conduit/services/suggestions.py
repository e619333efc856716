"""Suggested follow-up questions after an answer (`suggested_questions_after_answer`)."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from conduit.core.llm.errors import ModelError
from conduit.core.llm.provider import ChatMessage, Delta, GenerationParams
from conduit.db.models import App
from conduit.errors import BadRequest, ConduitError
from conduit.services import messages
from conduit.services.end_users import SERVICE_API, get_or_create_end_user
from conduit.services.prompts import generation_params

logger = logging.getLogger(__name__)
PROMPT = (
    "Here is a question and its answer.\n\nQuestion: {query}\n\nAnswer: {answer}\n\n"
    "Write three short follow-up questions the user might ask next, one per line, "
    "without numbering."
)
DISABLED = "Suggested Questions Is Disabled."
_LEADING = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


def enabled(app: App) -> bool:
    setting = (app.model_config_ or {}).get("suggested_questions_after_answer")
    return isinstance(setting, dict) and bool(setting.get("enabled"))


def parse_questions(text: str, limit: int = 3) -> list[str]:
    questions = []
    for line in text.splitlines():
        cleaned = _LEADING.sub("", line).strip().strip('"')
        if len(cleaned) > 3:
            questions.append(cleaned[:200])
    return questions[:limit]


async def suggest(
    context: Any,
    *,
    app: App,
    user: str,
    message_id: str,
    user_type: str = SERVICE_API,
    disabled: ConduitError | None = None,
) -> list[str]:
    """Three follow-ups for the user's message; [] when the model fails (Dify's behaviour).
    As Dify's Service API: an unknown message is a 404 before the feature is looked at; a
    disabled feature raises `disabled` (default: the Service API's 400; the web tier's is a
    403)."""
    db = context.db

    def load() -> tuple[str, str, dict[str, Any]]:
        with db.transaction() as session:
            merged = session.merge(app, load=False)
            end_user = get_or_create_end_user(session, merged, user, user_type=user_type)
            message = messages.get_message(session, merged, end_user, message_id)
            return message.query, message.answer, dict(merged.model_config_ or {})

    query, answer, config = await asyncio.to_thread(load)
    if not enabled(app):
        raise disabled or BadRequest(DISABLED)
    from conduit.services.runs import model_ref

    params = generation_params(config, context.settings.model.name)
    prompt = [ChatMessage("user", PROMPT.format(query=query[:2000], answer=answer[:4000]))]
    parts: list[str] = []
    try:
        model = await context.models.resolve(model_ref(app, context.settings))
        async for item in model.stream_chat(
            prompt, GenerationParams(model=params.model, temperature=0.7, max_tokens=120)
        ):
            if isinstance(item, Delta):
                parts.append(item.text)
    except ModelError as error:
        logger.info("suggested questions: the model failed (%s)", error.message)
        return []
    return parse_questions("".join(parts))
