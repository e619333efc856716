"""Reading SSE frames as a client does (shared by the run tests)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Frame:
    id: int | None
    event: str  # the payload's "event", or "ping"
    data: dict[str, Any]


def frames(response: httpx.Response) -> Iterator[Frame]:
    """Frames of a streaming response, in order, pings included."""
    frame_id: int | None = None
    data: str | None = None
    event_line: str | None = None
    for line in response.iter_lines():
        if line.startswith("id: "):
            frame_id = int(line[4:])
        elif line.startswith("data: "):
            data = line[6:]
        elif line.startswith("event: "):
            event_line = line[7:]
        elif line == "":
            if data is not None:
                payload = json.loads(data)
                yield Frame(frame_id, str(payload.get("event")), payload)
            elif event_line is not None:
                yield Frame(None, event_line, {})
            frame_id, data, event_line = None, None, None


def answer_of(items: list[Frame]) -> str:
    return "".join(str(f.data.get("answer", "")) for f in items if f.event == "message")
