"""A run's spec: what any executor needs to run it, in this process or another.

The lifecycle reads only the generic fields; `body` belongs to the app runner registered
under `kind` (`core/runs/kinds.py`), which also decodes it when the spec arrives as JSON (the
Celery executor sends specs through the outbox and the broker).
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol


class RunBody(Protocol):
    """The kind-specific part of a spec (a chat's prompt and model, a workflow's graph...)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable form that the kind's runner `decode`s back."""


@dataclass(frozen=True)
class RunSpec:
    """One run: its task id, the app runner that executes it (`kind`), whose app and
    workspace it belongs to, who may stop it (`owner`), when it was created (Unix seconds),
    the runner's own `body`, and whether it is an async run (`response_mode: "async"`: it
    runs on the `generation` queue under its own time limit, and its end is kept as a task's
    result and sent to its callback)."""

    task_id: str
    kind: str
    app_id: str
    tenant_id: str
    owner: str
    created_at: int
    body: Any  # a RunBody of `kind`'s runner
    asynchronous: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "kind": self.kind,
            "app_id": self.app_id,
            "tenant_id": self.tenant_id,
            "owner": self.owner,
            "created_at": self.created_at,
            "body": self.body.to_json(),
            "asynchronous": self.asynchronous,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], body: Any) -> RunSpec:
        """The spec `to_json` gave, with its body decoded by the kind's runner."""
        return cls(
            task_id=str(data["task_id"]),
            kind=str(data["kind"]),
            app_id=str(data["app_id"]),
            tenant_id=str(data["tenant_id"]),
            owner=str(data["owner"]),
            created_at=int(data["created_at"]),
            body=body,
            asynchronous=bool(data.get("asynchronous", False)),
        )


def time_ordered_id() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits; its time can be
    read back (`id_time`)."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10)) & (1 << 80) - 1
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # variant 10
    return str(uuid.UUID(int=value))


def id_time(task_id: str) -> float | None:
    """When a `time_ordered_id` was made (Unix seconds); None for any other id."""
    try:
        parsed = uuid.UUID(task_id)
    except ValueError:
        return None
    if parsed.version != 7:
        return None
    return (parsed.int >> 80) / 1000
