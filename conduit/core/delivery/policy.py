"""What follows an attempt: delivered, retry after a delay, or dead. Pure: no I/O, no clock
but the one passed in."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# Answers worth another try: the receiver is overloaded, slow or broken for a moment.
RETRYABLE_STATUS = frozenset({408, 429})


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: retry n waits uniform(0, min(max, base·2^(n-1)))."""

    retries: int = 3
    base: float = 2.0
    max_delay: float = 300.0
    retry_after_max: float = 3600.0

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.max_delay, self.base * (2 ** max(0, retry - 1)))
        return (rng or random).uniform(0, ceiling)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    delay: float = 0.0  # seconds before the next attempt (RETRY only)


def decide(
    policy: RetryPolicy,
    *,
    status_code: int | None,
    retry_after_header: str | None,
    attempt_in_round: int,
    permanent_error: bool = False,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> Decision:
    """The decision after attempt number `attempt_in_round` (1 = the first of its round).

    No status (a timeout, a refused connection), 408, 429 and 5xx are retried while retries are
    left; a `Retry-After` (seconds or an HTTP date) replaces the backoff, up to
    `retry_after_max`. Any other answer but a 2xx, or a `permanent_error` (an address the SSRF
    rules refuse), is dead at once."""
    if status_code is not None and 200 <= status_code < 300:
        return Decision(Outcome.DELIVERED)
    retryable = not permanent_error and (
        status_code is None or status_code in RETRYABLE_STATUS or status_code >= 500
    )
    if not retryable or attempt_in_round > policy.retries:
        return Decision(Outcome.DEAD)
    asked = retry_after(retry_after_header, now or datetime.now(UTC))
    if asked is not None:
        return Decision(Outcome.RETRY, min(asked, policy.retry_after_max))
    return Decision(Outcome.RETRY, policy.backoff(attempt_in_round, rng))


def retry_after(header: str | None, now: datetime) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or HTTP-date); None if absent or
    unreadable."""
    if not header:
        return None
    text = header.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
