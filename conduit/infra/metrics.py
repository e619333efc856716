"""Prometheus metrics. With `--workers` > 1 the CLI sets PROMETHEUS_MULTIPROC_DIR before the
server processes start, and /metrics aggregates every process's values."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter(
    "conduit_http_requests_total",
    "HTTP requests by route, method and status.",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "conduit_http_request_duration_seconds",
    "HTTP request latency by route.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
IN_FLIGHT = Gauge(
    "conduit_http_requests_in_flight",
    "HTTP requests being served now.",
    multiprocess_mode="livesum",
)
TASKS = Counter(
    "conduit_tasks_total",
    "Celery tasks by queue and state (started, succeeded, failure, retry).",
    ["queue", "state"],
)
TASK_SECONDS = Histogram(
    "conduit_task_duration_seconds",
    "Celery task run time by queue.",
    ["queue"],
)
OUTBOX_SENT = Counter(
    "conduit_outbox_sent_total",
    "Outbox rows handed to the broker, by outcome.",
    ["outcome"],
)
WEBHOOK_ATTEMPTS = Counter(
    "conduit_webhook_delivery_attempts_total",
    "Callback delivery attempts by outcome (delivered, retry, dead).",
    ["outcome"],
)


QUEUE_WAITING = Gauge(
    "conduit_queue_waiting_tasks",
    "Tasks written to a queue and not yet started by a worker (from the outbox, at scrape).",
    ["queue"],
    multiprocess_mode="mostrecent",
)
QUEUE_STALE = Gauge(
    "conduit_tasks_waiting_stale",
    "Tasks waiting on a queue longer than CONDUIT_RUNS_ASYNC_STALE_SECONDS (at scrape).",
    ["queue"],
    multiprocess_mode="mostrecent",
)


MODEL_RUNS = Counter(
    "conduit_model_runs_total",
    "Runs by model provider, model and outcome.",
    ["provider", "model", "status"],
)
MODEL_TOKENS = Counter(
    "conduit_model_tokens_total",
    "Tokens by model provider, model and kind (prompt, completion).",
    ["provider", "model", "kind"],
)


def set_queue_depths(depths: dict[str, tuple[int, int]], queues: tuple[str, ...]) -> None:
    """The queue gauges from `outbox.waiting_by_queue` (every known queue: 0 when empty)."""
    for queue in sorted({*queues, *depths}):
        total, stale = depths.get(queue, (0, 0))
        QUEUE_WAITING.labels(queue).set(total)
        QUEUE_STALE.labels(queue).set(stale)


def render() -> tuple[bytes, str]:
    """The exposition text of this process, or of every process in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
