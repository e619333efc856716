"""Fixtures for both modes. `CONDUIT_TEST_MODE=embedded` (default): SQLite and in-process
backends. `CONDUIT_TEST_MODE=distributed`: PostgreSQL + Redis + a `conduit worker`; the run
fails rather than skips when those do not answer, so CI cannot pass without them."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conduit.db.migrations import upgrade
from conduit.infra.db import Database, build_engine
from tests import support

DISTRIBUTED = support.MODE == "distributed"


def pytest_report_header() -> str:
    return f"conduit test mode: {support.MODE}"


def pytest_sessionstart(session: pytest.Session) -> None:
    if DISTRIBUTED:
        missing = [
            name
            for name, ok in (
                ("PostgreSQL", support.pg_answers()),
                ("Redis", support.redis_answers()),
            )
            if not ok
        ]
        if missing:
            raise pytest.UsageError(f"distributed mode needs {', '.join(missing)} (not answering)")


# Files whose tests take longest (killed and restarted services, a browser): under pytest-xdist
# (`scripts/test`: `--dist loadfile --no-loadscope-reorder`, files handed out in this order)
# they go first, so that no worker is left running one of them alone at the end.
SLOW_FIRST = ("tests/faults/", "tests/e2e/browser/")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, the slow files first, then the others by their number of tests (most
    first); each file's tests stay together and in their order. Every worker sorts the same."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    paths = {id(item): item.nodeid.split("::")[0] for item in items}
    counts = Counter(paths.values())
    order = {id(item): index for index, item in enumerate(items)}

    def key(item: pytest.Item) -> tuple[bool, int, str, int]:
        path = paths[id(item)]
        return (not path.startswith(SLOW_FIRST), -counts[path], path, order[id(item)])

    items.sort(key=key)


@pytest.fixture(scope="session")
def mode() -> str:
    return support.MODE


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """An empty database of the mode's dialect (SQLite file or a fresh PostgreSQL database)."""
    if DISTRIBUTED:
        with support.fresh_pg_database() as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A database built by the migrations (never `create_all`)."""
    upgrade(database_url)
    database = Database(build_engine(database_url, pool_size=5, max_overflow=5))
    yield database
    database.dispose()


@pytest.fixture
def redis_url() -> Iterator[str]:
    if not support.redis_answers():
        pytest.skip("Redis does not answer")
    url = support.fresh_redis_url()
    yield url
    support.release_redis_url(url)


@pytest.fixture(scope="module")
def shared_redis_url() -> Iterator[str]:
    """One flushed Redis database for a whole module (its tests use distinct key prefixes)."""
    if not support.redis_answers():
        pytest.skip("Redis does not answer")
    url = support.fresh_redis_url()
    yield url
    support.release_redis_url(url)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[support.PrivateRedis]:
    server = support.PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def stack_env(
    workdir: Path,
    *,
    database_url: str | None,
    redis_url: str | None,
    broker_url: str | None,
    **extra: str,
) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONDUIT_")}
    env.update(
        {
            "CONDUIT_DATA_DIR": str(workdir / ".conduit"),
            "CONDUIT_LOG_JSON_FORMAT": "true",
            "CONDUIT_AUTH_SECRET_KEY": "test-secret-key-for-conduit-tests-0123456789",
            "CONDUIT_TASKS_RELAY_INTERVAL": "0.2",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if database_url:
        env["CONDUIT_DATABASE_URL"] = database_url
    if redis_url:
        env["CONDUIT_REDIS_URL"] = redis_url
    if broker_url:
        env["CONDUIT_BROKER_URL"] = broker_url
        env["CONDUIT_BROKER_VISIBILITY_TIMEOUT"] = "100"
        env["CONDUIT_RUNS_MAX_SECONDS"] = "15"  # the visibility must exceed it + 80 s
        env["CONDUIT_TASKS_SOFT_TIME_LIMIT"] = "25"
        env["CONDUIT_TASKS_TIME_LIMIT"] = "30"
        env["CONDUIT_BROKER_RESTORE_INTERVAL"] = "1"
    env.update(extra)
    return env
