"""Settings, grouped by concern; each group reads its own `CONDUIT_<GROUP>_*` variables.

`load_settings()` turns a bad value into one `SettingsError` line naming the variable and
the problem.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError


class SettingsError(Exception):
    """A setting has a bad value; the message is one line naming it."""


def _group(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", validate_default=True)


class DataSettings(BaseSettings):
    model_config = _group("CONDUIT_DATA_")

    dir: Path = Field(
        Path(".conduit"),
        description="Folder for the embedded database, uploaded files and generated secrets.",
    )


class DatabaseSettings(BaseSettings):
    model_config = _group("CONDUIT_DATABASE_")

    url: str | None = Field(
        None,
        description="PostgreSQL URL (postgresql://...). Unset: SQLite in the data dir.",
    )
    pool_size: int = Field(10, ge=1, le=500, description="Connections kept open per process.")
    max_overflow: int = Field(20, ge=0, le=1000, description="Extra connections under load.")
    connect_timeout: float = Field(
        3.0, gt=0, le=60, description="Seconds to wait for a connection."
    )
    echo: bool = Field(False, description="Log every SQL statement (debugging).")

    @field_validator("url")
    @classmethod
    def _known_dialect(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if value.startswith(("postgres://", "postgresql://")):
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        if value.startswith(("postgresql+psycopg://", "sqlite:///")):
            return value
        raise ValueError("must be a postgresql:// or sqlite:/// URL")


class RedisSettings(BaseSettings):
    model_config = _group("CONDUIT_REDIS_")

    url: str | None = Field(
        None,
        description="Redis URL (redis://host:6379/0). Unset: in-process cache, limits and events.",
    )
    socket_timeout: float = Field(0.5, gt=0, le=30, description="Seconds per Redis command.")
    retry_after: float = Field(
        2.0, gt=0, le=300, description="Seconds to bypass Redis after it failed (cache degrades)."
    )

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value


class BrokerSettings(BaseSettings):
    model_config = _group("CONDUIT_BROKER_")

    url: str | None = Field(
        None,
        description="Celery broker (redis:// or amqp://). Unset: Celery inside the server.",
    )
    visibility_timeout: int = Field(
        3600,
        ge=10,
        description="Redis broker: seconds before an unacknowledged task is redelivered. "
        "Must exceed the longest task.",
    )
    restore_interval: float = Field(
        5.0, gt=0, description="Redis broker: seconds between sweeps that restore unacked tasks."
    )

    @field_validator("url")
    @classmethod
    def _broker_scheme(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("redis://", "rediss://", "amqp://", "pyamqp://")):
            raise ValueError("must be a redis:// or amqp:// URL")
        return value


# Of a process's shutdown budget, what cutting in-flight runs short and closing takes at most.
DRAIN_RESERVE = 3.0


class TaskSettings(BaseSettings):
    model_config = _group("CONDUIT_TASKS_")

    embedded_concurrency: int = Field(
        4, ge=1, le=64, description="Threads of the embedded Celery worker."
    )
    soft_time_limit: int = Field(300, ge=1, description="Seconds before a task is asked to stop.")
    time_limit: int = Field(360, ge=1, description="Seconds before a task is killed.")
    relay_interval: float = Field(
        1.0, gt=0, le=60, description="Seconds between outbox relay sweeps."
    )
    relay_batch: int = Field(200, ge=1, le=10000, description="Outbox rows sent per sweep.")
    relay_gather: float = Field(
        0.02,
        ge=0,
        le=1,
        description="Seconds a relay sweep follows the last one at least: under load the "
        "commits of that time go out together (one transaction, one publish round trip) "
        "instead of a sweep per commit; an idle relay sends at once. 0: a sweep per nudge.",
    )
    retention_hours: int = Field(
        24, ge=1, description="Hours completed outbox rows are kept before cleanup."
    )
    shutdown_timeout: float = Field(
        25.0,
        ge=0,
        description="Seconds from SIGTERM to a `conduit worker`'s exit (threads or solo "
        "pool), everything included: runs in flight have all but the last "
        f"{DRAIN_RESERVE:g} s to end, then they are cut short (stored as stopped with their "
        "partial answers, their logs ended).",
    )
    max_send_attempts: int = Field(
        0, ge=0, description="Relay attempts before an outbox row is given up (0: retry forever)."
    )


class AuthSettings(BaseSettings):
    model_config = _group("CONDUIT_AUTH_")

    secret_key: str | None = Field(
        None,
        description="Key signing console tokens and file links (every server and worker must "
        "share it). Unset: generated once into <data dir>/secret_key.",
    )
    access_token_minutes: int = Field(60, ge=1, description="Console access token lifetime.")
    refresh_token_days: int = Field(30, ge=1, description="Console refresh token lifetime.")


class HttpSettings(BaseSettings):
    model_config = _group("CONDUIT_HTTP_")

    host: str = Field("127.0.0.1", description="Address `conduit serve` binds.")
    port: int = Field(5001, ge=1, le=65535, description="Port `conduit serve` binds.")
    workers: int = Field(1, ge=1, le=64, description="Server processes (distributed mode only).")
    gil_switch_interval_ms: float = Field(
        1.0,
        ge=0.1,
        le=100,
        description="How long (ms) a server thread may hold the GIL while another waits for it "
        "(CPython's default: 5); shorter keeps the event loop's latency low beside busy "
        "database threads.",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description='Origins allowed by CORS (JSON list), e.g. ["*"].'
    )
    slow_request_ms: int = Field(
        1000,
        ge=1,
        description="Requests whose response starts later than this (ms) are logged as a "
        "warning; a stream's own length does not count.",
    )
    shutdown_timeout: float = Field(
        25.0,
        ge=0,
        description="Seconds from SIGTERM to exit, everything included (under an "
        "orchestrator's usual 30 s grace): open streams have all but the last "
        f"{DRAIN_RESERVE:g} s to end, then runs still in flight are cut short (stored as "
        "stopped with their partial answers, their logs ended) and the process exits.",
    )

    @property
    def streams_grace(self) -> float:
        """How long open responses may take after SIGTERM (the rest is the hand-off's)."""
        return max(0.0, self.shutdown_timeout - DRAIN_RESERVE)

    max_json_body_bytes: int = Field(
        2 * 1024 * 1024,
        ge=1024,
        description="Largest request body (bytes) of every request but a multipart upload, "
        "which has the upload limits (`CONDUIT_UPLOAD_*`); a larger one is refused with 413.",
    )


class LogSettings(BaseSettings):
    model_config = _group("CONDUIT_LOG_")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    json_format: bool = Field(False, description="Write logs as one JSON object per line.")

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class CacheSettings(BaseSettings):
    model_config = _group("CONDUIT_CACHE_")

    default_ttl: int = Field(300, ge=1, description="Seconds a cached entry lives by default.")
    max_entries: int = Field(
        10000,
        ge=1,
        description="In-process cache, and the Redis cache's memory tier: entries kept before "
        "the oldest are evicted.",
    )
    prefix: str = Field("conduit:cache:", description="Redis key prefix of cache entries.")
    near_ttl: float = Field(
        10.0,
        ge=0,
        description="Redis cache: seconds a server process keeps an entry it read in memory "
        "(0: never); invalidations reach every process at once over Redis pub/sub.",
    )


class MetricsSettings(BaseSettings):
    model_config = _group("CONDUIT_METRICS_")

    worker_port: int = Field(
        0, ge=0, le=65535, description="`conduit worker` serves Prometheus metrics here (0: off)."
    )


class RunSettings(BaseSettings):
    model_config = _group("CONDUIT_RUNS_")

    executor: Literal["inline", "celery"] = Field(
        "inline",
        description="Where runs execute: inline (asyncio in the API process) or celery "
        "(the `generation` queue; the API only reads the event log).",
    )
    event_retention: float = Field(
        600, gt=0, description="Seconds a finished run's events stay available for resume."
    )
    max_events_per_run: int = Field(
        100_000, ge=100, description="Events one run may append (memory bound)."
    )
    max_active_per_app: int = Field(
        0, ge=0, description="Concurrent runs per app unless the app sets its own (0: no limit)."
    )
    requests_per_minute_per_key: int = Field(
        0, ge=0, description="Generation requests per minute per API key (0: no limit)."
    )
    max_seconds: int = Field(
        600,
        ge=1,
        description="The longest a run may take: it is then ended (failed, "
        "`run_time_limit_exceeded`) with its partial answer stored.",
    )
    lease_seconds: float = Field(
        6.0,
        gt=0,
        description="A live run renews its lease every quarter of this at the latest (and with "
        "each checkpoint); a run whose lease lapsed (its executor is gone) is taken over: "
        "ended with its partial answer and a terminal event. A run never renewed is taken "
        "over after max_seconds + 60 s.",
    )
    checkpoint_seconds: float = Field(
        1.0,
        gt=0,
        description="How often a streaming run stores its answer so far (only when it grew).",
    )
    takeover_interval: float = Field(
        1.0,
        gt=0,
        description="Seconds between a distributed server's looks for runs whose lease lapsed.",
    )
    async_max_seconds: int = Field(
        3600,
        ge=1,
        description="The longest an async run (`response_mode: async`) may take: async runs "
        "are the long ones, and no client waits on them.",
    )
    async_retention_hours: float = Field(
        24.0,
        gt=0,
        description="Hours an async run's task (its status, result, Idempotency-Key and "
        "callback deliveries) is kept after it ended; then it is removed, and its status "
        "answers 404 `task_expired`.",
    )
    log_retention_days: float = Field(
        0.0,
        ge=0,
        description="Days a finished workflow run (its history in the logs, its nodes' traces, "
        "`GET /v1/workflows/run/{id}`) is kept; then beat removes it with its node "
        "executions, in batches of short transactions, never a running one nor while its "
        "async task is kept. 0: kept for good. Conversations and messages are not touched.",
    )
    async_stale_seconds: float = Field(
        60.0,
        gt=0,
        description="A task waiting on a queue longer than this counts as stale in the "
        "`conduit_tasks_waiting_stale` gauge.",
    )
    memory_turns: int = Field(
        10, ge=0, le=200, description="Past conversation turns put into a chat prompt."
    )
    ping_interval: float = Field(10.0, gt=0, description="Seconds between SSE `ping` events.")


class WebAppSettings(BaseSettings):
    model_config = _group("CONDUIT_WEBAPP_")

    requests_per_minute_per_end_user: int = Field(
        60,
        ge=0,
        description="Generation requests per minute per end user of the web tier (`/api`; "
        "over it: 429 `rate_limit_error`; 0: no limit).",
    )
    passport_days: int = Field(
        30,
        ge=1,
        le=3650,
        description="Days a web end user's passport (`GET /api/passport`) stays valid; a "
        "returning browser that sends it gets a fresh one for the same end user.",
    )


class ModelSettings(BaseSettings):
    model_config = _group("CONDUIT_MODEL_")

    base_url: str | None = Field(
        None,
        description="Server-wide OpenAI-compatible endpoint (e.g. https://api.openai.com/v1). "
        "Unset: the bundled local model.",
    )
    api_key: str | None = Field(None, description="API key of the server-wide endpoint.")
    name: str = Field(
        "smollm2-135m-instruct", description="Model used when an app does not name one."
    )
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to connect to a model endpoint.")
    read_timeout: float = Field(
        60.0, gt=0, description="Seconds to wait for the next token before giving up."
    )
    max_retries: int = Field(
        2, ge=0, le=10, description="Retries of a failed model call before its first token."
    )
    breaker_failures: int = Field(
        5, ge=1, description="Consecutive failures that open a provider's circuit breaker."
    )
    breaker_reset: float = Field(
        30.0, gt=0, description="Seconds an open circuit waits before letting a trial call through."
    )
    local_threads: int = Field(1, ge=1, le=16, description="Threads per local generation.")
    local_pool: int = Field(1, ge=1, le=8, description="Local model instances (parallel runs).")
    speech_to_text_model: str = Field(
        "whisper-1",
        description="Model that `/audio-to-text` asks an app's OpenAI-compatible endpoint for "
        "(`POST /audio/transcriptions`); the local model does no speech.",
    )
    text_to_speech_model: str = Field(
        "tts-1",
        description="Model that `/text-to-audio` asks an app's OpenAI-compatible endpoint for "
        "(`POST /audio/speech`).",
    )
    text_to_speech_voice: str = Field(
        "alloy",
        description="Voice of `/text-to-audio` when neither the request nor the app names one.",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


class UploadSettings(BaseSettings):
    model_config = _group("CONDUIT_UPLOAD_")

    file_size_limit_mb: int = Field(15, ge=1, description="Largest document upload (MB).")
    image_size_limit_mb: int = Field(10, ge=1, description="Largest image upload (MB).")
    audio_size_limit_mb: int = Field(50, ge=1, description="Largest audio upload (MB).")
    video_size_limit_mb: int = Field(100, ge=1, description="Largest video upload (MB).")
    batch_count_limit: int = Field(
        20, ge=1, le=100, description="Files in one console upload of documents."
    )
    signed_url_seconds: int = Field(
        300,
        ge=1,
        le=7 * 24 * 3600,
        description="Seconds a signed file URL (an upload's `source_url`, a site's `icon_url`) "
        "stays valid after it is issued.",
    )


class RagSettings(BaseSettings):
    model_config = _group("CONDUIT_RAG_")

    embed_batch: int = Field(
        8,
        ge=1,
        le=64,
        description="Segments embedded per model call (8-16: memory grows with "
        "the batch, speed does not).",
    )
    embed_threads: int = Field(
        0,
        ge=0,
        le=64,
        description="Threads of the local embedding model (0: onnxruntime's default, every core).",
    )
    embed_timeout: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Seconds a workspace provider's embedding endpoint may take to answer one "
        "call (indexing retries it later; a query fails with `completion_request_error`).",
    )
    lease_seconds: float = Field(
        30.0,
        gt=1,
        description="Seconds an indexing worker's hold on a document lasts unless renewed "
        "(every quarter of it); a document whose holder stopped renewing is resumed by another.",
    )
    max_resumes: int = Field(
        5,
        ge=0,
        description="Resumes after a dead worker before a document is marked `error` "
        "(a document that kills its worker every time).",
    )
    max_retries: int = Field(
        8,
        ge=0,
        description="Retries after a retryable failure (the embedding endpoint down) "
        "before a document is marked `error`.",
    )
    retry_base: float = Field(
        2.0, gt=0, description="Seconds: retry n waits a random time up to base × 2^(n-1)."
    )
    retry_max: float = Field(300.0, gt=0, description="Seconds: the longest wait between retries.")
    slice_seconds: float = Field(
        30.0,
        gt=0,
        description="Seconds one indexing task works on a document before it hands the rest to "
        "a task of its own, so a long document never outlives a task's time limit (at most a "
        "quarter of CONDUIT_TASKS_SOFT_TIME_LIMIT is used).",
    )
    parse_timeout: float = Field(
        120.0,
        gt=0,
        description="Seconds a PDF, Word or HTML file may take to parse (at most half of "
        "CONDUIT_TASKS_SOFT_TIME_LIMIT is used).",
    )
    parse_memory_mb: int = Field(
        1536, ge=64, description="Memory a PDF, Word or HTML file's parser may use (MB)."
    )
    vector_index: Literal["auto", "matrix", "pgvector"] = Field(
        "auto",
        description="Where segment vectors are searched: `pgvector` (HNSW in PostgreSQL), "
        "`matrix` (exact, in each process's memory, from the embedding cache), or `auto` "
        "(pgvector on PostgreSQL when the extension is installed, else matrix).",
    )
    hnsw_ef_search: int = Field(
        100,
        ge=10,
        le=1000,
        description="pgvector: the width of an HNSW search (higher: better recall, slower).",
    )


def _comma_list(value: Any) -> Any:
    """A comma-separated setting as a list of its non-empty, stripped items."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class WebhookSettings(BaseSettings):
    model_config = _group("CONDUIT_WEBHOOK_")

    retries: int = Field(
        3, ge=0, le=20, description="Retries of a callback after its first attempt failed."
    )
    backoff_base: float = Field(
        2.0,
        gt=0,
        description="Seconds: retry n waits a random time up to base × 2^(n-1) (full jitter).",
    )
    backoff_max: float = Field(
        300.0, gt=0, description="Seconds: the longest wait between two attempts."
    )
    retry_after_max: float = Field(
        3600.0,
        gt=0,
        description="Seconds: the longest `Retry-After` of a 408/429/5xx answer that is honoured.",
    )
    timeout: float = Field(
        10.0, gt=0, le=300, description="Seconds one attempt may take (connect and answer)."
    )
    allowed_networks: str = Field(
        "",
        description="Comma-separated addresses or CIDR networks a callback (and a workflow "
        "HTTP node, a file fetched by URL, an external knowledge API) may target although "
        "they are private, loopback, link-local or reserved (e.g. 127.0.0.0/8,::1/128).",
    )
    allowed_hosts: str = Field(
        "",
        description="Comma-separated host names a callback (and a workflow HTTP node, a file "
        "fetched by URL, an external knowledge API) may target whatever they resolve to "
        "(`*.example.com` matches its subdomains).",
    )
    secret_grace_seconds: float = Field(
        86400.0,
        ge=0,
        description="Seconds a rotated webhook secret stays valid: callbacks are signed with "
        "both meanwhile.",
    )

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        for item in _comma_list(value):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an address or CIDR network") from None
        return value

    @property
    def networks(self) -> list[str]:
        return list(_comma_list(self.allowed_networks))

    @property
    def hosts(self) -> list[str]:
        return [host.lower().rstrip(".") for host in _comma_list(self.allowed_hosts)]


class WorkflowSettings(BaseSettings):
    model_config = _group("CONDUIT_WORKFLOW_")

    max_steps: int = Field(
        500,
        ge=1,
        le=100_000,
        description="Node executions a workflow run may make (items of "
        "iterations and rounds of loops count).",
    )
    concurrency: int = Field(
        64, ge=1, le=10_000, description="Nodes of one workflow run that may run at once."
    )
    code_cpu_seconds: float = Field(
        5.0, gt=0, le=600, description="CPU seconds one code node's process may use."
    )
    code_wall_seconds: float = Field(
        10.0, gt=0, le=3600, description="Seconds one code node may take, waiting included."
    )
    code_memory_mb: int = Field(
        256, ge=32, le=65536, description="Address space of one code node's process (MiB)."
    )
    code_output_bytes: int = Field(
        1_000_000, ge=1024, description="Bytes of JSON one code node may return."
    )
    http_max_response_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Bytes of an http-request node's response body."
    )
    human_input_max_wait_hours: float = Field(
        168.0,
        gt=0,
        le=24 * 366,
        description="Longest a workflow run may wait on a human-input form, whatever the "
        "node's own timeout: past it the run ends stopped (Dify's global timeout, 7 days).",
    )
    human_input_sweep_seconds: float = Field(
        10.0,
        ge=0.5,
        le=3600,
        description="How often beat looks for human-input forms whose time ran out (the "
        "node's timeout branch) and answers given while their run was not yet paused.",
    )


GROUPS: dict[str, type[BaseSettings]] = {
    "data": DataSettings,
    "database": DatabaseSettings,
    "redis": RedisSettings,
    "broker": BrokerSettings,
    "tasks": TaskSettings,
    "auth": AuthSettings,
    "http": HttpSettings,
    "log": LogSettings,
    "cache": CacheSettings,
    "metrics": MetricsSettings,
    "runs": RunSettings,
    "webapp": WebAppSettings,
    "model": ModelSettings,
    "upload": UploadSettings,
    "webhook": WebhookSettings,
    "rag": RagSettings,
    "workflow": WorkflowSettings,
}


@dataclass(frozen=True)
class Settings:
    data: DataSettings
    database: DatabaseSettings
    redis: RedisSettings
    broker: BrokerSettings
    tasks: TaskSettings
    auth: AuthSettings
    http: HttpSettings
    log: LogSettings
    cache: CacheSettings
    metrics: MetricsSettings
    runs: RunSettings
    webapp: WebAppSettings
    model: ModelSettings
    upload: UploadSettings
    webhook: WebhookSettings
    rag: RagSettings
    workflow: WorkflowSettings

    @property
    def mode(self) -> Literal["embedded", "distributed"]:
        """Distributed when tasks go to a broker with separate workers; embedded otherwise."""
        return "distributed" if self.broker.url else "embedded"

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data.dir / 'conduit.db').resolve()}"

    def secret_key(self) -> str:
        """The configured secret, or one generated once and kept in the data dir."""
        if self.auth.secret_key:
            return self.auth.secret_key
        path = self.data.dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.data.dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key


def _one_line(group: type[BaseSettings], error: ValidationError) -> str:
    prefix = str(group.model_config.get("env_prefix", ""))
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    name = f"{prefix}{field}".upper()
    value = os.environ.get(name)
    got = f" (got {value!r})" if value is not None else ""
    return f"{name}: {first['msg']}{got}"


def _unparsable(group: type[BaseSettings], error: PydanticSettingsError) -> str:
    prefix = str(group.model_config.get("env_prefix", ""))
    text = str(error)
    for field_name in group.model_fields:
        name = f"{prefix}{field_name}".upper()
        if f'"{field_name}"' in text or f"'{field_name}'" in text or name.lower() in text.lower():
            got = os.environ.get(name)
            return f'{name}: must be a JSON list, e.g. ["https://a.example"] (got {got!r})'
    return f"{prefix.rstrip('_')}: {text}"


def load_settings() -> Settings:
    """Read every group from the environment; raise `SettingsError` naming the first bad value."""
    built: dict[str, Any] = {}
    for name, group in GROUPS.items():
        try:
            built[name] = group()
        except ValidationError as error:
            raise SettingsError(_one_line(group, error)) from None
        except PydanticSettingsError as error:
            # pydantic-settings cannot parse a complex (list) value: it must be JSON.
            raise SettingsError(_unparsable(group, error)) from None
    settings = Settings(**built)
    if settings.tasks.time_limit < settings.tasks.soft_time_limit:
        raise SettingsError(
            "CONDUIT_TASKS_TIME_LIMIT: must be at least CONDUIT_TASKS_SOFT_TIME_LIMIT"
        )
    redis_broker = (settings.broker.url or "").startswith(("redis://", "rediss://"))
    if redis_broker and settings.broker.visibility_timeout <= settings.tasks.time_limit + 60:
        raise SettingsError(
            "CONDUIT_BROKER_VISIBILITY_TIMEOUT: must exceed CONDUIT_TASKS_TIME_LIMIT + 60 s, "
            "or the broker hands a long task to a second worker while the first still runs it"
        )
    if redis_broker and settings.broker.visibility_timeout <= settings.runs.max_seconds + 80:
        raise SettingsError(
            "CONDUIT_BROKER_VISIBILITY_TIMEOUT: must exceed CONDUIT_RUNS_MAX_SECONDS + 80 s "
            "(a run's task may take its time limit + 20 s), or the broker hands a live run to a "
            "second worker"
        )
    if settings.http.workers > 1 and settings.mode == "embedded":
        raise SettingsError(
            "CONDUIT_HTTP_WORKERS: more than 1 worker needs the distributed mode "
            "(set CONDUIT_BROKER_URL); the embedded task queue lives in one process"
        )
    return settings


def describe_settings() -> list[tuple[str, str, str, str]]:
    """(environment variable, type, default, description) for every setting, in group order."""
    rows: list[tuple[str, str, str, str]] = []
    for group in GROUPS.values():
        prefix = str(group.model_config.get("env_prefix", ""))
        for field_name, info in group.model_fields.items():
            default = info.get_default(call_default_factory=True)
            annotation = getattr(info.annotation, "__name__", None) or str(info.annotation)
            rows.append(
                (
                    f"{prefix}{field_name}".upper(),
                    annotation.replace("typing.", ""),
                    "" if default is None else str(default),
                    info.description or "",
                )
            )
    return rows
