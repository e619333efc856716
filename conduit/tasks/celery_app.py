"""The Celery app: one factory for both modes, named queues, reliability settings, and the
signal hooks that carry the request id into tasks and count tasks for /metrics."""

from __future__ import annotations

import contextlib
import functools
import logging
import ssl
import time
from collections.abc import Iterator
from typing import Any

from celery import Celery, signals
from kombu.entity import Queue

from conduit.infra import metrics
from conduit.infra.outbox import PublishBatch
from conduit.infra.settings import Settings
from conduit.infra.tracing import current_request_id, reset_request_id, set_request_id
from conduit.tasks import _consumer as consumer
from conduit.tasks import _redis_transport as redis_transport
from conduit.tasks.consumers import QueueHeartbeat, is_redis_url

logger = logging.getLogger(__name__)

# One queue per kind of work (design.md §5); `ops` carries small follow-ups of console actions,
# `background` the model calls off a run's path (conversation naming), on a pool of their own.
QUEUES = ("ops", "maintenance", "dataset", "generation", "webhook", "ops_trace", "background")
BACKGROUND_QUEUE = "background"
# The queues a server publishes to (its `enqueue` calls): its `/ready` wants a live consumer for
# each (`webhook`: a callback, and a redelivery from the console). A server never sends to the
# others (beat sends `maintenance`). (`dataset`: a document to index, a file to remove.)
SERVER_QUEUES = ("ops", "generation", "background", "webhook", "dataset")
TASK_MODULES = (
    "conduit.tasks.ops",
    "conduit.tasks.maintenance",
    "conduit.tasks.generation",
    "conduit.tasks.webhook",
    "conduit.tasks.dataset",
)
EMBEDDED_BROKER = "conduit-memory://localhost//"
RUN_TASK = "conduit.generation.run"


def create_celery(settings: Settings) -> Celery:
    """Build the Celery app; embedded mode gets the in-memory wake-on-publish transport."""
    import conduit.tasks._embedded_transport  # noqa: F401  (registers the transport alias)

    app = Celery("conduit", set_as_current=False)
    broker = settings.broker.url or EMBEDDED_BROKER
    transport_options: dict[str, Any] = {}
    broker_options: dict[str, Any] = {}
    if is_redis_url(broker):
        # kombu's Redis transport with a channel that survives a broker outage with tasks in
        # flight (`conduit.tasks._redis_transport` says why); the same transport otherwise.
        broker_options["broker_transport"] = redis_transport.TRANSPORT
        if broker.startswith("rediss://"):
            # kombu defaults rediss:// to unverified TLS only for its own transport name.
            broker_options["broker_use_ssl"] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        transport_options = {
            "visibility_timeout": settings.broker.visibility_timeout,
            "unacked_restore_interval": settings.broker.restore_interval,
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": 2,
            "socket_timeout": 5,
        }
    elif settings.broker.url:
        # RabbitMQ: a publish returns once the broker has the message (publisher confirms).
        # Without, a publish on a connection the broker closed (its restart) is written into
        # the dead socket and lost while the outbox row says `dispatched`.
        transport_options = {"confirm_publish": True}
    if settings.broker.url:
        # Publishing (the outbox relay) must fail fast when the broker is down: the relay keeps
        # the row and retries with backoff, so kombu's own reconnect loop only adds delay.
        transport_options.update({"max_retries": 1, "interval_start": 0, "interval_step": 0.2})
    app.conf.update(
        broker_url=broker,
        broker_transport_options=transport_options,
        broker_connection_timeout=2,
        broker_connection_retry_on_startup=True,
        # A worker never gives up on a lost broker (Celery's default: 100 tries, then exit), and
        # retries it every second (`conduit.tasks._consumer`).
        broker_connection_max_retries=None,
        worker_consumer=consumer.CONSUMER,
        # Tasks running when the broker connection is lost run on (a run finishes and stores
        # its answer); a redelivered copy is skipped by the run's lease claim or its outbox row.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # Celery's "prefetch count reduction" after a reconnect restores the prefetch count with
        # `basic.qos` calls from the acks of the tasks that outlived the old connection: seen
        # with RabbitMQ, the consumer stayed at one message at a time and then lost its
        # connection to a corrupted frame (`UnexpectedFrame`) 30 s later. With late acks and a
        # prefetch multiplier of 1 it only saves reserving one pool's worth of messages early.
        worker_enable_prefetch_count_reduction=False,
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.tasks.soft_time_limit,
        task_time_limit=settings.tasks.time_limit,
        # A run ends itself at CONDUIT_RUNS_MAX_SECONDS (an async one at
        # CONDUIT_RUNS_ASYNC_MAX_SECONDS; its partial answer stored): its task's limits only
        # back that up, they must never cut it first.
        task_annotations={
            RUN_TASK: {
                "soft_time_limit": longest_run(settings) + 10,
                "time_limit": longest_run(settings) + 20,
            }
        },
        # Durable queues and persistent messages: a RabbitMQ broker keeps queued tasks across
        # its restart (a Redis broker keeps what its own persistence keeps; the outbox re-sends
        # what a Redis broker lost, `conduit.tasks.broker_loss`).
        task_queues=[Queue(name, durable=True) for name in QUEUES],
        task_default_delivery_mode="persistent",
        task_default_queue="ops",
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        imports=TASK_MODULES,
        beat_schedule={
            "reap-stale-runs": {
                "task": "conduit.maintenance.reap_stale_runs",
                "schedule": 60.0,
                "options": {"queue": "maintenance"},
            },
            "purge-expired-tasks": {
                "task": "conduit.maintenance.purge_expired_tasks",
                # Every half retention, at most every 5 minutes: a task outlives its
                # retention by no more than that.
                "schedule": max(1.0, min(300.0, settings.runs.async_retention_hours * 1800)),
                "options": {"queue": "maintenance"},
            },
            "purge-workflow-runs": {
                "task": "conduit.maintenance.purge_workflow_runs",
                # Every half retention, at most hourly (a no-op while the runs are kept).
                "schedule": max(1.0, min(3600.0, settings.runs.log_retention_days * 43200))
                if settings.runs.log_retention_days
                else 3600.0,
                "options": {"queue": "maintenance"},
            },
            "resume-human-input-runs": {
                "task": "conduit.maintenance.resume_human_input_runs",
                "schedule": settings.workflow.human_input_sweep_seconds,
                "options": {"queue": "maintenance"},
            },
            "purge-finished-outbox": {
                "task": "conduit.maintenance.purge_outbox",
                "schedule": 3600.0,
                "options": {"queue": "maintenance"},
            },
        },
        **broker_options,
    )
    app.steps["consumer"].add(QueueHeartbeat)  # only active with a Redis broker
    return app


def longest_run(settings: Settings) -> int:
    """The longest any run may take (an async run's limit is its own)."""
    return max(settings.runs.max_seconds, settings.runs.async_max_seconds)


class CeleryPublisher:
    """The outbox relay's publishing through this Celery app (no retries: the relay retries).
    A batch goes through one producer; on a Redis broker its messages are pushed together in
    one pipeline when it ends (kombu's `Producer.batch`), one round trip instead of one per
    message and none of the per-message client set-up; on RabbitMQ each is published as it
    is sent."""

    def __init__(self, app: Celery) -> None:
        self._app = app

    def __call__(
        self, task: str, kwargs: dict[str, Any], queue: str, task_id: str, headers: dict[str, Any]
    ) -> None:
        with self._app.producer_or_acquire() as producer:
            self._send(producer, task, kwargs, queue, task_id, headers)

    @contextlib.contextmanager
    def batch(self, size: int) -> Iterator[PublishBatch]:
        with self._app.producer_or_acquire() as producer:
            send = functools.partial(self._send, producer)
            if not producer.supports_batch_publish:
                yield PublishBatch(send, atomic=False)
                return
            # Room for every message's commands (a push, and an expiry where queues expire):
            # the batch is flushed once, when it ends, never part-way.
            with producer.batch(max_size=4 * size + 8):
                yield PublishBatch(send, atomic=True)

    def _send(
        self,
        producer: Any,
        task: str,
        kwargs: dict[str, Any],
        queue: str,
        task_id: str,
        headers: dict[str, Any],
    ) -> None:
        self._app.send_task(
            task,
            kwargs=kwargs,
            queue=queue,
            task_id=task_id,
            headers=headers,
            retry=False,
            producer=producer,
            # What logs and monitors show of the arguments: their names. Celery's default
            # repr of a run's spec (its whole JSON) cost more than the rest of the message.
            argsrepr="()",
            kwargsrepr="{" + ", ".join(kwargs) + "}",
        )


def publisher(app: Celery) -> CeleryPublisher:
    """The outbox relay's publisher for this app."""
    return CeleryPublisher(app)


# --- request id and metrics hooks (module level: Celery signals are process-global) -----------

_TOKEN = "_conduit_context"  # noqa: S105 — (start time, request-id token) kept on the task's request


@signals.before_task_publish.connect
def _stamp_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None and not headers.get("request_id"):
        request_id = current_request_id()
        if request_id:
            headers["request_id"] = request_id


@signals.task_prerun.connect
def _bind_request_id(task_id: str = "", task: Any = None, **_: Any) -> None:
    request_id = task.request.get("request_id") if task is not None else None
    if task is not None:
        setattr(task.request, _TOKEN, (time.perf_counter(), set_request_id(request_id)))
    metrics.TASKS.labels(queue=_queue_of(task), state="started").inc()


@signals.task_postrun.connect
def _unbind_request_id(
    task_id: str = "", task: Any = None, state: str | None = None, **_: Any
) -> None:
    began, token = getattr(getattr(task, "request", None), _TOKEN, (None, None))
    outcome = "succeeded" if state == "SUCCESS" else (state or "unknown").lower()
    queue = _queue_of(task)
    metrics.TASKS.labels(queue=queue, state=outcome).inc()
    if began is not None:
        metrics.TASK_SECONDS.labels(queue=queue).observe(time.perf_counter() - began)
    if token is not None:
        reset_request_id(token)


def _queue_of(task: Any) -> str:
    info = getattr(getattr(task, "request", None), "delivery_info", None) or {}
    return str(info.get("routing_key") or "unknown")
