"""The app factory and its lifespan: every stateful resource is built here, once per process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

import conduit
from conduit.api import console, ops, v1
from conduit.api.docs import install_docs
from conduit.api.errors import install_error_handlers
from conduit.api.hot_routes import HotRoutes
from conduit.api.middleware import RequestContextMiddleware
from conduit.api.responses import OrjsonResponse
from conduit.core.llm.registry import ModelRegistry
from conduit.core.runs.backends import RunBackends, build_run_backends
from conduit.core.runs.executors.inline import InlineExecutor
from conduit.core.runs.runner import EarlyStart, RunResult, RunSpec
from conduit.infra import heap
from conduit.infra.cache import Cache, RedisCache
from conduit.infra.db import Database
from conduit.infra.logging import configure_logging
from conduit.infra.outbox import OutboxRelay, RelayPolicy, recover_unfinished
from conduit.infra.redis import build_async_redis, build_redis
from conduit.infra.runtime import Resources, bind, build_resources
from conduit.infra.schema import prepare_schema
from conduit.infra.settings import Settings, load_settings
from conduit.infra.storage import LocalStorage
from conduit.services import runs
from conduit.services.auth import TokenPolicy

logger = logging.getLogger("conduit")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app (uvicorn calls this with `factory=True`)."""
    settings = settings or load_settings()
    configure_logging(settings.log.level, settings.log.json_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await asyncio.to_thread(_start, app, settings)
        runs = await _start_runs(app, settings, runtime.resources)
        heap.settle(switch_interval=settings.http.gil_switch_interval_ms / 1000)
        try:
            yield
        finally:
            await runs.stop()
            await asyncio.to_thread(runtime.stop)

    app = FastAPI(
        title="Conduit",
        version=conduit.__version__,
        description="LLM application server speaking Dify's Service API.",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
        docs_url=None,  # /docs and /redoc come from install_docs, with local assets
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    install_error_handlers(app)
    install_docs(app)
    # Innermost: the run-starting routes skip FastAPI's router; the middlewares below wrap them.
    app.add_middleware(HotRoutes, routes=v1.HOT_ROUTES)
    if settings.http.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.http.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "X-Response-Time"],
            allow_credentials="*" not in settings.http.cors_origins,
        )
    app.add_middleware(RequestContextMiddleware, slow_request_ms=settings.http.slow_request_ms)
    app.include_router(ops.router)
    app.include_router(console.router)
    app.include_router(v1.router)
    return app


class _Runtime:
    """What the lifespan started, so that shutdown stops it in reverse order."""

    def __init__(self, resources: Resources, relay: OutboxRelay, worker: Any) -> None:
        self.resources = resources
        self.relay = relay
        self.worker = worker

    def stop(self) -> None:
        self.relay.stop()
        if self.worker is not None:
            self.worker.stop()
        self.resources.db.dispose()
        logger.info("conduit stopped")


def _start(app: FastAPI, settings: Settings) -> _Runtime:
    import conduit.signals.handlers
    from conduit.tasks.celery_app import create_celery, publisher

    resources = build_resources(settings)
    bind(resources)
    prepare_schema(resources.db)
    celery = create_celery(settings)
    worker = None
    policy = RelayPolicy(
        interval=settings.tasks.relay_interval,
        batch=settings.tasks.relay_batch,
        max_attempts=settings.tasks.max_send_attempts,
    )
    if settings.mode == "embedded":
        from conduit.tasks.embedded import EmbeddedWorker

        recover_unfinished(resources.db)
        worker = EmbeddedWorker(
            celery,
            concurrency=settings.tasks.embedded_concurrency,
            schedule_path=settings.data.dir / "beat-schedule",
        )
        worker.start()
    else:
        policy = RelayPolicy(
            interval=settings.tasks.relay_interval,
            batch=settings.tasks.relay_batch,
            max_attempts=settings.tasks.max_send_attempts,
            redeliver_dispatched_after=settings.broker.visibility_timeout + 60,
            redeliver_running_after=settings.tasks.time_limit + 60,
        )
    relay = OutboxRelay(resources.db, publisher(celery), policy)
    resources.db.on_outbox_write(relay.nudge)
    relay.start()
    relay.nudge()

    app.state.resources = resources
    app.state.settings = settings
    app.state.celery = celery
    app.state.token_policy = TokenPolicy(
        secret_key=settings.secret_key(),
        access_minutes=settings.auth.access_token_minutes,
        refresh_days=settings.auth.refresh_token_days,
    )
    app.state.readiness_checks = _readiness_checks(settings, resources.db, celery, worker)
    logger.info(
        "conduit %s ready: %s mode, database %s, cache %s",
        conduit.__version__,
        settings.mode,
        resources.db.dialect,
        type(resources.cache).__name__,
    )
    return _Runtime(resources, relay, worker)


class _Runs:
    """The run machinery of this process, stopped (drained) before the rest."""

    def __init__(
        self,
        backends: RunBackends,
        registry: ModelRegistry,
        inline: InlineExecutor | None,
        settings: Settings,
        cache: Cache,
    ) -> None:
        self.backends = backends
        self.registry = registry
        self.inline = inline
        self.settings = settings
        self.cache = cache

    async def stop(self) -> None:
        if self.inline is not None:
            # uvicorn has already waited for open responses up to the same timeout; what is
            # still running now is cut short and stored as stopped with its partial answer.
            await self.inline.drain(grace=min(5.0, self.settings.http.shutdown_timeout))
        await self.registry.aclose()
        await self.backends.aclose()
        if isinstance(self.cache, RedisCache):
            await self.cache.detach_async()


async def _start_runs(app: FastAPI, settings: Settings, resources: Resources) -> _Runs:
    backends = build_run_backends(settings)
    if isinstance(resources.cache, RedisCache) and settings.redis.url:
        # The hot path's cache reads (API key, app, end user) on this loop, not in a thread.
        resources.cache.attach_async(
            build_async_redis(settings.redis.url, socket_timeout=settings.redis.socket_timeout)
        )
    registry = ModelRegistry(runs.model_defaults(settings))
    env = runs.RunEnvironment(
        db=resources.db,
        eventlog=backends.eventlog,
        stops=backends.stops,
        limiter=backends.limiter,
        resolve_model=registry.resolve,
        loop=asyncio.get_running_loop(),
    )
    inline: InlineExecutor | None = None
    if settings.runs.executor == "inline":

        async def execute(
            spec: RunSpec, slot_key: str | None, early: EarlyStart | None
        ) -> RunResult:
            return await runs.run_spec(env, spec, slot_key=slot_key, early=early)

        inline = InlineExecutor(execute)
    runs.bind_process_runs(backends, registry)
    app.state.run_context = runs.RunContext(
        env=env, settings=settings, inline=inline, cache=resources.cache
    )
    app.state.storage = LocalStorage(settings.data.dir / "files")
    await asyncio.to_thread(_end_dead_runs, resources.db, settings)
    _warn_without_model(settings)
    return _Runs(backends, registry, inline, settings, resources.cache)


def _end_dead_runs(db: Database, settings: Settings) -> None:
    with db.transaction() as session:
        if settings.mode == "embedded":
            runs.end_interrupted_runs(session)  # one process: nothing else can be running them
        else:
            runs.reap_stale_runs(session, settings)


def _warn_without_model(settings: Settings) -> None:
    if settings.model.base_url:
        return
    from conduit.core.llm.local import local_model_available

    available, how_to = local_model_available()
    if not available:
        logger.warning("no model: %s", how_to)


def _readiness_checks(
    settings: Settings, db: Database, celery: Any, worker: Any
) -> dict[str, Callable[[], None]]:
    checks: dict[str, Callable[[], None]] = {"database": db.ping}
    if settings.redis.url:
        client = build_redis(
            settings.redis.url, socket_timeout=min(2.0, settings.redis.socket_timeout * 4)
        )

        def redis_ping() -> None:
            client.ping()

        checks["redis"] = redis_ping
    if worker is not None:

        def embedded_worker() -> None:
            if not worker.alive:
                raise RuntimeError("the embedded Celery worker is not running")

        checks["broker"] = embedded_worker
    else:

        def broker_ping() -> None:
            with celery.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)

        checks["broker"] = broker_ping
    return checks
