"""RunEvents: the numbered events of one run, shared by every consumer (stream, block, resume)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson

# Events that end a run's stream; after one of them the log is closed.
TERMINAL_EVENTS = frozenset({"message_end", "error", "workflow_finished"})


@dataclass(frozen=True)
class RunEvent:
    """Event number `seq` (1, 2, 3, ...) of run `task_id`. `data` is the wire JSON object,
    serialized once when it is appended: an SSE frame sends these bytes as they are, and
    `payload` decodes them only for a consumer that looks inside (e.g. the blocking reply)."""

    task_id: str
    seq: int
    event: str
    data: bytes = field(repr=False)

    @classmethod
    def of(cls, task_id: str, seq: int, event: str, payload: dict[str, Any]) -> RunEvent:
        return cls(task_id=task_id, seq=seq, event=event, data=orjson.dumps(payload))

    @cached_property
    def payload(self) -> dict[str, Any]:
        decoded: dict[str, Any] = orjson.loads(self.data)
        return decoded

    @property
    def terminal(self) -> bool:
        return self.event in TERMINAL_EVENTS
