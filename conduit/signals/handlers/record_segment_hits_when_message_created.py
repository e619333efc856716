"""message-was-created → the hit counts of the passages its run used (its
`retriever_resources`), one UPDATE; nothing for a run without any."""

from __future__ import annotations

from typing import Any

from conduit.db.models import Message
from conduit.infra.resources import Resources
from conduit.services.datasets.retrieval import record_hits
from conduit.signals.signals import message_was_created


def record_segment_hits(message: Message, *, resources: Resources, **_: Any) -> None:
    used = (message.message_metadata or {}).get("retriever_resources") or []
    segment_ids = [str(item["segment_id"]) for item in used if item.get("segment_id")]
    if segment_ids:
        record_hits(resources.db, segment_ids)


SIGNALS = (message_was_created,)
HANDLER = record_segment_hits
