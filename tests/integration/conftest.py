"""Fixtures of the integration tests: the fake OpenAI server (in a thread), one per module;
a Celery app bound to the test's resources, and a real worker on threads of this process."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery import Celery, current_app

from conduit.infra.cache import MemoryCache
from conduit.infra.db import Database
from conduit.infra.resources import Resources
from conduit.infra.settings import Settings, load_settings
from conduit.tasks.context import TaskContext, TaskParts, attach
from conduit.tasks.embedded import EmbeddedWorker
from tests.fakes.fake_openai import FakeOpenAIThread, fake_openai


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeOpenAIThread]:
    with fake_openai() as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeOpenAIThread) -> FakeOpenAIThread:
    """The fake server, reset (no queued failures, default pace and answer)."""
    fake_server.reset()
    return fake_server


@pytest.fixture
def bound(db: Database) -> Callable[[Settings, Celery], Resources]:
    """Attach this test's resources to a Celery app for its tasks (as `conduit/bootstrap.py`
    does)."""

    def _bind(settings: Settings, app: Celery) -> Resources:
        from conduit.bootstrap import build_models, build_retriever, build_runners
        from conduit.services.runs import run_limits

        resources = Resources(settings, db, MemoryCache())
        models = build_models(settings, db)
        parts = TaskParts(
            resources,
            models,
            build_runners(settings, models, db, build_retriever(settings, db)),
            run_limits(settings),
        )
        attach(app, TaskContext.of_parts(parts))
        return resources

    return _bind


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[Celery], EmbeddedWorker]]:
    """Start a real Celery worker on threads of this process (the embedded mode's worker).

    A worker thread finds its app through Celery's process-wide default app, which the worker
    sets; the previous default is put back afterwards so that later tests do not run tasks on
    this test's (closed) app."""
    previous = current_app._get_current_object()
    workers: list[EmbeddedWorker] = []

    def _start(app: Celery) -> EmbeddedWorker:
        worker = EmbeddedWorker(
            app, concurrency=2, schedule_path=tmp_path / "beat-schedule", beat=False
        )
        worker.start()
        workers.append(worker)
        return worker

    yield _start
    for worker in workers:
        worker.stop()
    previous.set_current()
    previous.set_default()


@pytest.fixture
def make_settings(
    monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path
) -> Callable[..., Settings]:
    """Settings read from the environment, as a process would, on the test's database."""

    def _make(**env: str) -> Settings:
        for name in list(os.environ):
            if name.startswith("CONDUIT_") and not name.startswith("CONDUIT_TEST_"):
                monkeypatch.delenv(name)
        monkeypatch.setenv("CONDUIT_DATA_DIR", str(tmp_path / ".conduit"))
        monkeypatch.setenv("CONDUIT_DATABASE_URL", database_url)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return load_settings()

    return _make
