"""The inline executor: runs as asyncio tasks in the API process; drained on shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from conduit.core.runs.early import StartGates
from conduit.core.runs.spec import RunSpec

logger = logging.getLogger(__name__)


class InlineExecutor:
    """Starts each run as a task on the running loop and keeps track of it until it ends."""

    def __init__(
        self,
        run: Callable[[RunSpec, str | None, StartGates | None], Coroutine[Any, Any, Any]],
    ) -> None:
        self._run = run
        self._tasks: set[asyncio.Task[Any]] = set()
        self._accepting = True

    @property
    def active(self) -> int:
        return len(self._tasks)

    @property
    def accepting(self) -> bool:
        return self._accepting

    def submit(
        self,
        spec: RunSpec,
        slot_key: str | None,
        *,
        gates: StartGates | None = None,
    ) -> asyncio.Task[Any]:
        """Start the run now; `slot_key` is the concurrency slot it gives back when it ends;
        `gates`: those of a run started before its start has finished (`core/runs/early.py`).
        Returns the run's task."""
        task = asyncio.get_running_loop().create_task(
            self._run(spec, slot_key, gates), name=f"run:{spec.task_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self, grace: float, cancel_wait: float = 10.0) -> int:
        """Stop accepting, wait up to `grace` seconds for in-flight runs, then cancel the rest (each
        ends as `stopped` with its partial answer stored, waited for up to `cancel_wait`
        seconds). Returns how many were cut short."""
        self._accepting = False
        pending = set(self._tasks)
        if not pending:
            return 0
        logger.info("draining %d in-flight run(s) for up to %.0f s", len(pending), grace)
        _, still_running = await asyncio.wait(pending, timeout=grace)
        for task in still_running:
            task.cancel()
        if still_running:
            await asyncio.wait(still_running, timeout=cancel_wait)
            logger.warning(
                "%d run(s) cut short by shutdown were stored as stopped", len(still_running)
            )
        return len(still_running)
