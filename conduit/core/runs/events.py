"""RunEvents: the numbered events of one run, shared by every consumer (stream, block, resume)."""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

# Events that end a run's stream; after one of them the log is closed.
TERMINAL_EVENTS = frozenset({"message_end", "error", "workflow_finished"})

_FRAME = b"id: %d\ndata: %s\n\n"


class RunEvent:
    """Event number `seq` (1, 2, 3, ...) of run `task_id`, held as its finished SSE frame
    (`id: <seq>\\ndata: <json>\\n\\n`), built once when the event is appended: every stream
    sends these bytes as they are, and `data` / `payload` slice and decode them only for a
    consumer that looks inside (the blocking reply, the Redis writer).

    The frame is also what keeps the event's memory exact: `orjson.dumps` hands back a bytes
    object carved from a 4 KiB buffer it never shrinks, so a log that kept that object would
    hold 4 KiB per token for the whole retention time.
    """

    __slots__ = ("event", "frame", "seq", "task_id")

    def __init__(self, task_id: str, seq: int, event: str, frame: bytes) -> None:
        self.task_id = task_id
        self.seq = seq
        self.event = event
        self.frame = frame

    @classmethod
    def of(cls, task_id: str, seq: int, event: str, payload: dict[str, Any]) -> RunEvent:
        return cls(task_id, seq, event, _FRAME % (seq, orjson.dumps(payload)))

    @classmethod
    def from_data(cls, task_id: str, seq: int, event: str, data: bytes) -> RunEvent:
        """The event whose JSON object is `data` (as another log stored it)."""
        return cls(task_id, seq, event, _FRAME % (seq, data))

    @property
    def data(self) -> bytes:
        """The event's JSON object: the frame without `id: <seq>\\ndata: ` and the blank line."""
        return self.frame[11 + len(str(self.seq)) : -2]

    @property
    def payload(self) -> dict[str, Any]:
        decoded: dict[str, Any] = orjson.loads(memoryview(self.frame)[11 + len(str(self.seq)) : -2])
        return decoded

    @property
    def terminal(self) -> bool:
        return self.event in TERMINAL_EVENTS

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RunEvent):
            return NotImplemented
        return (self.task_id, self.seq, self.event, self.frame) == (
            other.task_id,
            other.seq,
            other.event,
            other.frame,
        )

    def __hash__(self) -> int:
        return hash((self.task_id, self.seq))

    def __repr__(self) -> str:
        return f"RunEvent(task_id={self.task_id!r}, seq={self.seq}, event={self.event!r})"


class Frames(NamedTuple):
    """Consecutive events of one run as the chunk a stream sends: their SSE frames end to end,
    and the seq of the last one (where the next read goes on)."""

    last: int
    data: bytes


class EventTemplate:
    """The JSON of events that differ in one string field only (the pieces of a streamed
    answer): the fixed fields are serialised once, each event is that prefix, its value and
    `}`. `field` must be the payload's last key."""

    __slots__ = ("_head",)

    def __init__(self, payload: dict[str, Any], field: str) -> None:
        if not payload or next(reversed(payload)) != field:
            raise ValueError(f"{field!r} must be the template's last field")
        whole = orjson.dumps({**payload, field: ""})
        self._head = whole[: -len(b'""}')]

    def render(self, value: str) -> bytes:
        """The event's JSON object with `field` set to `value`."""
        return self._head + orjson.dumps(value) + b"}"
