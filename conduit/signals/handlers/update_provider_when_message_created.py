"""message-was-created → the serving workspace provider's usage (`quota_used`, `last_used_at`).

Dify's `update_provider_when_message_created`. It runs after the message's commit, so a failure
here (logged by `send_isolated`) loses the count, never the message.
"""

from __future__ import annotations

from typing import Any

from conduit.db.models import Message
from conduit.infra.resources import Resources
from conduit.services.model_providers import add_usage, workspace_provider_id
from conduit.signals.signals import message_was_created


def update_provider_usage(message: Message, *, resources: Resources, **_: Any) -> None:
    provider_id = workspace_provider_id(message.model_provider)
    tokens = (message.message_tokens or 0) + (message.answer_tokens or 0)
    if provider_id is None or tokens <= 0:
        return  # a server provider, or a run that used no tokens (e.g. failed before start)
    with resources.db.transaction() as session:
        add_usage(session, provider_id, tokens)


SIGNALS = (message_was_created,)
HANDLER = update_provider_usage
