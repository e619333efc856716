"""Bootstrap of a `conduit worker` / `conduit beat` process (distributed mode)."""

from __future__ import annotations

from celery import Celery

from conduit.infra.logging import configure_logging
from conduit.infra.settings import Settings
from conduit.tasks.celery_app import create_celery


def boot_worker(settings: Settings) -> Celery:
    import conduit.signals.handlers  # noqa: F401  (handlers run in tasks too)

    configure_logging(settings.log.level, settings.log.json_format)
    app = create_celery(settings)
    app.set_current()
    app.set_default()
    if settings.metrics.worker_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics.worker_port, addr="127.0.0.1")
    return app
