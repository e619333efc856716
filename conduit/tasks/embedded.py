"""Celery running inside the server process (embedded mode): a thread-pool worker and beat."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from celery import Celery
from celery.beat import EmbeddedService

from conduit.tasks.celery_app import QUEUES

logger = logging.getLogger(__name__)


class EmbeddedWorker:
    """Starts a Celery worker (and beat) on threads of this process; stops them on shutdown."""

    def __init__(
        self, app: Celery, *, concurrency: int, schedule_path: Path, beat: bool = True
    ) -> None:
        self._app = app
        self._concurrency = concurrency
        self._schedule_path = schedule_path
        self._with_beat = beat
        self._ready = threading.Event()
        self._worker: Any = None
        self._thread: threading.Thread | None = None
        self._beat: Any = None

    def start(self, timeout: float = 15.0) -> None:
        app = self._app
        # Without this the worker's tracer uses a disabled app (infra.md §4, gotcha 2).
        app.finalize()
        app.set_current()
        app.set_default()
        self._worker = app.WorkController(
            pool_cls="threads",
            concurrency=self._concurrency,
            queues=list(QUEUES),
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            ready_callback=lambda _consumer: self._ready.set(),
            hostname="embedded@conduit",
        )
        self._thread = threading.Thread(
            target=self._worker.start, name="celery-embedded", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the embedded Celery worker did not start")
        if self._with_beat:
            self._schedule_path.parent.mkdir(parents=True, exist_ok=True)
            self._beat = EmbeddedService(
                app, thread=True, schedule_filename=str(self._schedule_path)
            )
            self._beat.start()
        logger.info("embedded Celery worker started (%d threads)", self._concurrency)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._ready.is_set()

    def stop(self) -> None:
        if self._beat is not None:
            self._beat.stop()
        if self._worker is not None:
            self._worker.stop(in_sighandler=False)
        if self._thread is not None:
            self._thread.join(10)
