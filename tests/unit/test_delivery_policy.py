"""What follows a callback attempt (`conduit/core/delivery/policy.py`): delivered, retried with
backoff and full jitter (or after the receiver's `Retry-After`), or dead."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from conduit.core.delivery import Outcome, RetryPolicy, decide, retry_after

POLICY = RetryPolicy(retries=3, base=1.0, max_delay=5.0, retry_after_max=60.0)
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def after(status: int | None, attempt: int = 1, header: str | None = None, **kw: bool):  # type: ignore[no-untyped-def]
    return decide(
        POLICY,
        status_code=status,
        retry_after_header=header,
        attempt_in_round=attempt,
        now=NOW,
        rng=random.Random(7),
        **kw,
    )


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_a_2xx_is_delivered(status: int) -> None:
    assert after(status).outcome == Outcome.DELIVERED


@pytest.mark.parametrize("status", [None, 408, 429, 500, 502, 503, 504])
def test_timeouts_connection_errors_408_429_and_5xx_are_retried(status: int | None) -> None:
    decision = after(status)
    assert decision.outcome == Outcome.RETRY
    assert 0 <= decision.delay <= 1.0


@pytest.mark.parametrize("status", [301, 302, 400, 401, 403, 404, 410, 422])
def test_other_answers_are_dead_at_once(status: int) -> None:
    assert after(status).outcome == Outcome.DEAD


def test_a_permanent_error_is_dead_at_once() -> None:
    assert after(None, permanent_error=True).outcome == Outcome.DEAD


def test_retries_run_out_after_the_budget() -> None:
    assert after(500, attempt=3).outcome == Outcome.RETRY
    assert after(500, attempt=4).outcome == Outcome.DEAD


def test_backoff_grows_exponentially_with_full_jitter_up_to_the_max() -> None:
    rng = random.Random(1)
    for retry, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (10, 5.0)]:
        delays = [POLICY.backoff(retry, rng) for _ in range(200)]
        assert all(0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling * 0.8  # the whole range is used (full jitter)
        assert min(delays) < ceiling * 0.2


def test_retry_after_seconds_replace_the_backoff_up_to_the_cap() -> None:
    assert after(429, header="7").delay == 7.0
    assert after(503, header="3600").delay == 60.0


def test_retry_after_as_an_http_date() -> None:
    header = format_datetime(NOW + timedelta(seconds=12), usegmt=True)
    assert after(429, header=header).delay == pytest.approx(12.0)
    assert retry_after(format_datetime(NOW - timedelta(seconds=5), usegmt=True), NOW) == 0.0


def test_an_unreadable_retry_after_falls_back_to_the_backoff() -> None:
    assert retry_after("soon", NOW) is None
    assert 0 <= after(429, header="soon").delay <= 1.0
