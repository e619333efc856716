"""The fault-injection suite runs in the distributed mode only (its stacks need PostgreSQL and
Redis); runnable alone: `CONDUIT_TEST_MODE=distributed pytest tests/faults`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DISTRIBUTED
from tests.faults.harness import PACE_MS, long_answer


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if not DISTRIBUTED and collection_path.name.startswith("test_"):
        return True
    return None


@pytest.fixture(scope="module")
def slow_upstream() -> Iterator[Any]:
    """The fake model streaming 200 words 20 ms apart (a 4 s answer)."""
    from tests.fakes.fake_openai import fake_openai_process

    with fake_openai_process(pace_ms=PACE_MS, answer=long_answer()) as fake:
        yield fake
