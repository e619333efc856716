"""RunEvents: the numbered events of one run, shared by every consumer (stream, block, resume)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Events that end a run's stream; after one of them the log is closed.
TERMINAL_EVENTS = frozenset({"message_end", "error", "workflow_finished"})


@dataclass(frozen=True)
class RunEvent:
    """Event number `seq` (1, 2, 3, ...) of run `task_id`; `payload` is the wire JSON object."""

    task_id: str
    seq: int
    event: str
    payload: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.event in TERMINAL_EVENTS
