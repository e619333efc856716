"""A circuit breaker per provider endpoint: stop hammering an upstream that keeps failing.

    closed ──(failure_threshold consecutive failures)──▶ open
    open ──(reset_after seconds)──▶ half-open: one trial call goes through
    half-open ──trial succeeds──▶ closed;  ──trial fails──▶ open (the clock restarts)

Only failures that say something about the upstream's health count: errors with
`retryable=True` (5xx, timeouts, 429, connection failures). A 400 caused by the user's prompt or
a 401 from bad credentials are answers from a healthy upstream and never open the circuit.
While open, `before_call()` raises `ProviderUnavailable` without touching the network.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum

from conduit.core.llm.errors import ModelError, ProviderUnavailable


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def counts_as_failure(exc: BaseException) -> bool:
    """True for errors that mean the upstream is unhealthy (retryable model errors, I/O errors)."""
    if isinstance(exc, ModelError):
        return exc.retryable
    return isinstance(exc, (OSError, TimeoutError))


class CircuitBreaker:
    """Consecutive-failure breaker; call `before_call()`, then `record_success/failure()`."""

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_after: float = 30.0,
        *,
        name: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self.name = name
        self._clock = clock
        # A plain lock: the breaker is shared by every request of a provider; on one event loop
        # there is no contention, and it keeps the bookkeeping correct if threads share it too.
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> CircuitState:
        with self._lock:
            return self._current_state()

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def before_call(self) -> None:
        """Let a call through, or raise `ProviderUnavailable` when open (or a trial is running)."""
        with self._lock:
            state = self._current_state()
            if state is CircuitState.CLOSED:
                return
            if state is CircuitState.HALF_OPEN and not self._trial_in_flight:
                self._state = CircuitState.HALF_OPEN
                self._trial_in_flight = True
                return
            retry_in = max(0.0, self._opened_at + self.reset_after - self._clock())
        label = f"[{self.name}] " if self.name else ""
        raise ProviderUnavailable(
            f"{label}The model provider is unavailable after repeated failures; "
            f"requests fail fast for {retry_in:.0f} more seconds.",
            retry_after=retry_in,
        )

    def record_success(self) -> None:
        with self._lock:
            self._state = CircuitState.CLOSED
            self._failures = 0
            self._trial_in_flight = False

    def record_failure(self, exc: BaseException) -> None:
        """Count `exc` if it means the upstream is unhealthy; other errors leave the count as is."""
        with self._lock:
            was_trial = self._trial_in_flight
            self._trial_in_flight = False
            if not counts_as_failure(exc):
                return
            self._failures += 1
            if was_trial or self._failures >= self.failure_threshold:
                self._state = CircuitState.OPEN
                self._opened_at = self._clock()

    def release(self) -> None:
        """The call ended without a verdict (cancelled): free the half-open trial slot."""
        with self._lock:
            self._trial_in_flight = False

    def _current_state(self) -> CircuitState:
        if self._state is CircuitState.OPEN and self._clock() - self._opened_at >= self.reset_after:
            return CircuitState.HALF_OPEN
        return self._state
