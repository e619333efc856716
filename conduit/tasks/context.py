"""What Conduit's tasks use, handed to them through their Celery app.

`conduit/bootstrap.py` attaches a `TaskContext` to every Celery app it builds (`attach`); a
task reaches it as `task_context(self)` (tasks are bound). The context builds its parts once
per process: a prefork worker's child builds its own after the fork, never sharing the
parent's database connections.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from conduit.core.llm.registry import ModelRegistry
from conduit.core.runs.backends import RunBackends
from conduit.core.runs.kinds import AppRunners
from conduit.core.runs.lifecycle import RunLimits
from conduit.infra.resources import Resources
from conduit.services.datasets.indexing import Indexer, build_indexer


class LiveRuns:
    """The runs this worker process is executing, each the main task of an event loop in a
    pool thread: a shutdown cuts them short (each ends `stopped`, its partial answer stored and
    its log ended, as the server's drain does). A prefork pool's runs are in its children,
    which this does not reach: they follow Celery's warm shutdown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = {}

    def add(self, task_id: str, task: asyncio.Task[Any]) -> None:
        with self._lock:
            self._runs[task_id] = (task.get_loop(), task)

    def discard(self, task_id: str) -> None:
        with self._lock:
            self._runs.pop(task_id, None)

    def cut_short(self) -> int:
        """Cancel every live run (from any thread); returns how many."""
        with self._lock:
            live = list(self._runs.values())
        for loop, task in live:
            loop.call_soon_threadsafe(task.cancel)
        return len(live)


@dataclass
class TaskParts:
    """`backends`: the server's in-process run backends, shared with the tasks of its embedded
    worker; None where each task builds Redis ones for its own event loop."""

    resources: Resources
    models: ModelRegistry
    runners: AppRunners
    limits: RunLimits
    backends: RunBackends | None = None
    live: LiveRuns = field(default_factory=LiveRuns)
    _indexer: Indexer | None = field(default=None, repr=False)
    _indexer_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def indexer(self) -> Indexer:
        """The document indexer, built on first use (it loads the embedding model)."""
        with self._indexer_lock:
            if self._indexer is None:
                self._indexer = build_indexer(self.resources, self.models)
            return self._indexer


class TaskContext:
    def __init__(self, build: Callable[[], TaskParts]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._built: tuple[int, TaskParts] | None = None

    def get(self) -> TaskParts:
        with self._lock:
            if self._built is None or self._built[0] != os.getpid():
                self._built = (os.getpid(), self._build())
            return self._built[1]

    def built(self) -> TaskParts | None:
        """The parts if this process has built them, else None; never builds and never waits
        (a signal handler calls it, perhaps while this very thread is inside `get()`)."""
        built = self._built
        return built[1] if built is not None and built[0] == os.getpid() else None

    @classmethod
    def of_parts(cls, parts: TaskParts) -> TaskContext:
        """A context of parts built already (the server's, for its embedded worker)."""
        context = cls(lambda: parts)
        context._built = (os.getpid(), parts)
        return context


_ATTRIBUTE = "conduit_context"


def attach(app: Celery, context: TaskContext) -> None:
    setattr(app, _ATTRIBUTE, context)


def task_context(task: Any) -> TaskParts:
    """The parts of the Celery app that runs `task`."""
    context: TaskContext | None = getattr(task.app, _ATTRIBUTE, None)
    if context is None:
        raise RuntimeError(f"task {task.name}: its Celery app was not built by conduit.bootstrap")
    return context.get()
