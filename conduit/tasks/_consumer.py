"""Celery's task consumer, reconnecting to a lost broker at a steady pace.

Celery's consumer retries a lost broker with kombu's default pace, 2, 4, 6 … up to 30 s between
attempts, and Celery offers no setting for it: after a 20 s outage a worker resumed 8 s after
the broker came back, after a longer one up to 30 s. Here every attempt is
`RECONNECT_INTERVAL` apart (a refused connection costs a syscall), so a worker resumes within
about a second of the broker's return. `worker_consumer` (`conduit.tasks.celery_app`) selects it.
"""

from __future__ import annotations

import functools
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

RECONNECT_INTERVAL = 1.0


class Consumer(CeleryConsumer):  # type: ignore[misc]
    def ensure_connected(self, conn: Any) -> Any:
        # Celery calls `conn.ensure_connection(errback, max_retries, callback=...)` without the
        # interval arguments; give this connection object its pace, the rest is Celery's own.
        conn.ensure_connection = functools.partial(
            conn.ensure_connection,
            interval_start=RECONNECT_INTERVAL,
            interval_step=0,
            interval_max=RECONNECT_INTERVAL,
        )
        return super().ensure_connected(conn)


CONSUMER = f"{__name__}:Consumer"
