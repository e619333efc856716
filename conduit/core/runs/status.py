"""Run status and its transition table: every status change goes through `transition()`.

pending ─▶ running ─▶ succeeded
   │          ├────▶ failed
   │          └────▶ stopped
   └─────────────▶ failed | stopped      (refused or cancelled before it started)
"""

from __future__ import annotations

import enum

from conduit.errors import ConduitError


class RunStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.STOPPED)


ALLOWED: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.PENDING: frozenset({RunStatus.RUNNING, RunStatus.FAILED, RunStatus.STOPPED}),
    RunStatus.RUNNING: frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.STOPPED}),
    RunStatus.SUCCEEDED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.STOPPED: frozenset(),
}


class InvalidTransition(ConduitError):
    code = "invalid_run_transition"
    status = 409
    default_message = "The run cannot change to that status."


def sources_of(new: RunStatus) -> list[RunStatus]:
    """The statuses a run may be in to change to `new` (for a guarded `UPDATE ... WHERE`)."""
    return [source for source, targets in ALLOWED.items() if new in targets]


def transition(current: RunStatus | str, new: RunStatus) -> RunStatus:
    """Check `current → new` against the table and return `new`; raise InvalidTransition."""
    source = RunStatus(current)
    if new not in ALLOWED[source]:
        raise InvalidTransition(f"A run cannot go from {source.value} to {new.value}.")
    return new
