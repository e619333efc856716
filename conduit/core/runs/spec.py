"""A run's spec: what any executor needs to run it, in this process or another.

The lifecycle reads only the generic fields; `body` belongs to the app runner registered
under `kind` (`core/runs/kinds.py`), which also decodes it when the spec arrives as JSON (the
Celery executor sends specs through the outbox and the broker).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class RunBody(Protocol):
    """The kind-specific part of a spec (a chat's prompt and model, a workflow's graph...)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable form that the kind's runner `decode`s back."""


@dataclass(frozen=True)
class RunSpec:
    """One run: its task id, the app runner that executes it (`kind`), whose app and
    workspace it belongs to, who may stop it (`owner`), when it was created (Unix seconds)
    and the runner's own `body`."""

    task_id: str
    kind: str
    app_id: str
    tenant_id: str
    owner: str
    created_at: int
    body: Any  # a RunBody of `kind`'s runner

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "kind": self.kind,
            "app_id": self.app_id,
            "tenant_id": self.tenant_id,
            "owner": self.owner,
            "created_at": self.created_at,
            "body": self.body.to_json(),
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
        )
