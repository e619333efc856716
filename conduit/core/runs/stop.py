"""Stop requests, ownership-checked: only the run's owner can stop it.

The owner is registered when the run starts. `request_stop()` by anyone else (or for an unknown
run) changes nothing and returns False, which callers still answer with `{"result": "success"}`
(Dify compatibility). The runner awaits `wait_for_stop()` beside its generation and cancels it
when the request arrives. Backends: `MemoryStopRegistry` (one process, thread-safe) and
`RedisStopRegistry` (any process); both pass `tests/contracts/test_stop_registry.py`.
"""

from __future__ import annotations

from typing import Protocol


class StopRegistry(Protocol):
    async def register(self, task_id: str, owner: str, *, ttl: float) -> None:
        """Record the run's owner for `ttl` seconds."""

    async def request_stop(self, task_id: str, owner: str) -> bool:
        """Mark the run stopped if `owner` owns it; True when it was marked."""

    async def is_stop_requested(self, task_id: str) -> bool:
        """Whether a stop was requested for the run."""

    async def wait_for_stop(self, task_id: str) -> None:
        """Return once a stop is requested (within ~0.25 s); cancel to stop waiting."""

    async def forget(self, task_id: str) -> None:
        """Drop the run's owner and flag (the run ended)."""

    async def aclose(self) -> None:
        """Release connections."""
