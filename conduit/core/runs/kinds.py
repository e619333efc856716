"""App runners: what a run of each kind does, registered under its kind.

The lifecycle (`core/runs/lifecycle.py`) knows nothing of chat or workflows: it asks the
runner registered under the spec's `kind` for an `Execution`, runs it against the run's event
log while it watches for a stop and the time limit, then has the runner build the result, store
it (`RunStore`) and name the terminal events. A new kind of app is a new runner registered in
`conduit/bootstrap.py`; nothing here changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from conduit.core.runs.eventlog.base import EventLog
from conduit.core.runs.spec import RunSpec
from conduit.core.runs.status import RunStatus
from conduit.errors import ConduitError, NotFound

# An event to append: its name and its JSON object (a dict, or already serialised).
Event = tuple[str, dict[str, Any] | bytes]


class Execution(Protocol):
    """One run of an app runner, from its first event to its result."""

    async def run(self, log: EventLog) -> None:
        """Do the work, appending events to `log`; return when done. Raise a ConduitError
        to fail the run with it (any other exception fails it as an internal error). It is
        cancelled when the run is stopped, reaches its time limit or the process drains."""

    def result(self, status: RunStatus, error: ConduitError | None) -> Any:
        """The run's result as it ended (what `run` produced so far, for a cut-short run)."""

    def checkpoint(self) -> Any | None:
        """What the run produced so far, to store while it runs (so that it outlives its
        executor); None when nothing changed since the last checkpoint."""


class RunStore(Protocol):
    """Where a kind's results are written (implemented in the services layer)."""

    async def finish(self, result: Any) -> dict[str, Any]:
        """Persist the finished run; returns what the terminal events report of it."""

    async def renew_many(self, runs: Sequence[tuple[RunSpec, Any | None]]) -> set[str]:
        """Renew the runs' leases (they are alive: runs whose lease lapsed are taken over),
        storing each one's checkpoint (`Execution.checkpoint`) when not None, together (one
        statement: `core/runs/leases.py`). Returns the task ids of those that no longer run
        (they ended, or were taken over)."""

    async def claim(self, spec: RunSpec, lease_seconds: float) -> bool:
        """Take the run for an executor about to start it (a Celery delivery): True only
        while it runs and no live executor holds it (none renewed its lease within
        `lease_seconds`). False: skip it, it ended or another delivery runs it."""


class AppRunner(Protocol):
    """The runner of one kind of run."""

    kind: str
    store: RunStore

    def decode(self, body: dict[str, Any]) -> Any:
        """The spec body from its JSON (`RunBody.to_json`)."""

    def start(self, spec: RunSpec) -> Execution:
        """A new execution of `spec` (nothing runs until its `run` is awaited)."""

    def terminal_events(self, spec: RunSpec, result: Any, stored: dict[str, Any]) -> list[Event]:
        """The events that end the run's log (after its result is stored)."""


class UnknownRunKind(NotFound):
    code = "not_found"
    default_message = "No runner is registered for this kind of run."


class AppRunners:
    """The app runners of this process, by kind (built once, in `conduit/bootstrap.py`)."""

    def __init__(self, runners: Iterable[AppRunner] = ()) -> None:
        self._by_kind: dict[str, AppRunner] = {}
        for runner in runners:
            self.register(runner)

    def register(self, runner: AppRunner) -> None:
        if runner.kind in self._by_kind:
            raise ValueError(f"a runner for {runner.kind!r} runs is registered already")
        self._by_kind[runner.kind] = runner

    def get(self, kind: str) -> AppRunner:
        try:
            return self._by_kind[kind]
        except KeyError:
            raise UnknownRunKind(f"No runner is registered for {kind!r} runs.") from None

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._by_kind)

    def decode(self, data: dict[str, Any]) -> RunSpec:
        """A spec from its JSON (`RunSpec.to_json`), its body decoded by its kind's runner.
        A chat or completion spec written before kinds existed (flat, its kind in `mode`) is
        read too: such a run may still wait in the outbox or a broker across an upgrade."""
        if "kind" not in data:
            data = {**data, "kind": data["mode"], "body": data}
        runner = self.get(str(data["kind"]))
        return RunSpec.from_json(data, runner.decode(dict(data["body"])))
