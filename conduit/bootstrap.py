"""One place wires a Conduit process: the server (`conduit serve`), a worker or beat
(`conduit worker | beat`) and the CLI's commands.

Every stateful object is built here and passed in: the resources (settings, database,
cache), the model registry (with the services layer's reader of workspace credentials), the
app runners by kind, the run backends and the executor, the Celery app (with the tasks'
context attached) and the signal handlers (connected bound to the resources). No module looks
any of them up globally. A new kind of app registers its runner in `build_runners`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery import signals as celery_signals

import conduit
from conduit.core.apps.chat import ChatRunner
from conduit.core.apps.workflow import WorkflowRunner
from conduit.core.llm.registry import ModelDefaults, ModelRegistry
from conduit.core.runs.backends import RunBackends, build_run_backends
from conduit.core.runs.early import StartGates
from conduit.core.runs.executors.inline import InlineExecutor
from conduit.core.runs.kinds import AppRunners
from conduit.core.runs.lifecycle import run_to_end
from conduit.core.runs.spec import RunSpec
from conduit.core.workflow.engine import RunLimits as EngineLimits
from conduit.core.workflow.nodes.registry import NODES
from conduit.infra.cache import Cache, MemoryCache, RedisCache
from conduit.infra.db import Database, build_engine
from conduit.infra.logging import configure_logging
from conduit.infra.outbox import OutboxRelay, RelayPolicy, recover_unfinished
from conduit.infra.redis import build_async_redis, build_redis
from conduit.infra.resources import Resources
from conduit.infra.schema import prepare_schema
from conduit.infra.settings import DRAIN_RESERVE, Settings
from conduit.infra.ssrf import AllowList
from conduit.infra.storage import LocalStorage, local_storage
from conduit.services import human_input, model_providers
from conduit.services.api_tools import ApiToolResolver
from conduit.services.app_annotations import AnnotationSearch
from conduit.services.auth import TokenPolicy
from conduit.services.datasets.indexing import resume_stalled_documents
from conduit.services.datasets.retrieval import KnowledgeSearch, Retriever
from conduit.services.datasets.vectors import build_vector_index
from conduit.services.human_input import FormAnswers
from conduit.services.run_files import FileParts
from conduit.services.runs import MessageStore, Runs, end_interrupted_runs, take_over_dead_runs
from conduit.services.runs import run_limits as build_run_limits
from conduit.services.runs.workflow import FileTexts, NodeServices, node_limits
from conduit.services.runs.workflow_store import WorkflowRunStore
from conduit.signals.handlers import connect_handlers
from conduit.tasks.broker_loss import RedisBrokerWatch
from conduit.tasks.celery_app import SERVER_QUEUES, create_celery, longest_run, publisher
from conduit.tasks.consumers import amqp_consumer_check, is_redis_url, redis_consumer_check
from conduit.tasks.context import TaskContext, TaskParts, attach

logger = logging.getLogger("conduit")


# --- the parts every process builds ----------------------------------------------------------


def build_resources(settings: Settings) -> Resources:
    db = Database(
        build_engine(
            settings.database_url,
            pool_size=settings.database.pool_size,
            max_overflow=settings.database.max_overflow,
            connect_timeout=settings.database.connect_timeout,
            echo=settings.database.echo,
        )
    )
    cache: Cache
    if settings.redis.url:
        cache = RedisCache(
            build_redis(settings.redis.url, socket_timeout=settings.redis.socket_timeout),
            prefix=settings.cache.prefix,
            default_ttl=settings.cache.default_ttl,
            retry_after=settings.redis.retry_after,
            near_ttl=settings.cache.near_ttl,
            near_max_entries=settings.cache.max_entries,
        )
    else:
        cache = MemoryCache(
            default_ttl=settings.cache.default_ttl, max_entries=settings.cache.max_entries
        )
    return Resources(settings=settings, db=db, cache=cache)


def model_defaults(settings: Settings) -> ModelDefaults:
    model = settings.model
    return ModelDefaults(
        base_url=model.base_url,
        api_key=model.api_key,
        connect_timeout=model.connect_timeout,
        read_timeout=model.read_timeout,
        max_retries=model.max_retries,
        breaker_failures=model.breaker_failures,
        breaker_reset=model.breaker_reset,
        local_threads=model.local_threads,
        local_pool=model.local_pool,
    )


def build_models(settings: Settings, db: Database) -> ModelRegistry:
    """The model registry; a workspace provider's key is read and decrypted by the services
    layer, in the process that runs the model."""
    return ModelRegistry(
        model_defaults(settings),
        credentials=functools.partial(
            model_providers.workspace_credentials, db, settings.secret_key()
        ),
    )


def build_retriever(settings: Settings, db: Database) -> Retriever:
    """The process's dataset search (its embedding model loads on the first search) on the
    vector index the settings choose."""
    index = build_vector_index(db, settings.rag.vector_index, ef_search=settings.rag.hnsw_ef_search)
    return Retriever.build(
        index,
        secret=settings.secret_key(),
        threads=settings.rag.embed_threads,
        timeout=settings.rag.embed_timeout,
        allow=AllowList.of(settings.webhook),
    )


def build_runners(
    settings: Settings, models: ModelRegistry, db: Database, retriever: Retriever
) -> AppRunners:
    """The app runners of this process, by kind."""
    store = MessageStore(db)
    search = KnowledgeSearch(db, retriever)
    match_annotation = AnnotationSearch(db, retriever.embedders)
    limits = node_limits(settings)

    server_secret = settings.secret_key()
    storage = local_storage(settings)
    file_texts = FileTexts(db, storage)
    attach = FileParts(db, storage)
    api_tools = ApiToolResolver(db, server_secret, AllowList.of(settings.webhook))
    forms = FormAnswers(db)

    def workflow_services(spec: RunSpec) -> NodeServices:
        return NodeServices(
            spec,
            models,
            limits,
            search,
            default_model=settings.model.name,
            server_secret=server_secret,
            files=file_texts,
            api_tools=api_tools,
            forms=forms,
        )

    return AppRunners(
        [
            ChatRunner(
                "chat",
                resolve_model=models.resolve,
                store=store,
                retrieve=search,
                attach=attach,
                match_annotation=match_annotation,
                resolve_tools=api_tools,
            ),
            ChatRunner(
                "completion",
                resolve_model=models.resolve,
                store=store,
                retrieve=search,
                attach=attach,
            ),
            WorkflowRunner(
                store=WorkflowRunStore(db),
                nodes=NODES,
                services=workflow_services,
                limits=EngineLimits(
                    max_steps=settings.workflow.max_steps,
                    concurrency=settings.workflow.concurrency,
                ),
                match_annotation=match_annotation,
            ),
        ]
    )


def build_task_parts(settings: Settings, celery: Celery | None = None) -> TaskParts:
    """What a worker process's tasks use (each task builds its run backends on its own loop).
    With its `celery` app, the process relays the outbox rows its tasks write (an async run's
    callback, written with the run's end) as they commit, instead of at a server's next
    sweep."""
    resources = build_resources(settings)
    if celery is not None:
        relay = _outbox_relay(settings, resources.db, celery)
        resources.db.on_outbox_write(relay.nudge)
        relay.start()  # a daemon thread: it ends with the process
    models = build_models(settings, resources.db)
    return TaskParts(
        resources=resources,
        models=models,
        runners=build_runners(
            settings, models, resources.db, build_retriever(settings, resources.db)
        ),
        limits=build_run_limits(settings),
    )


def build_runs(
    settings: Settings,
    resources: Resources,
    models: ModelRegistry,
    runners: AppRunners,
    backends: RunBackends,
) -> Runs:
    """A server's run machinery: its limits and, for the inline executor, the executor that
    runs each run with `run_to_end` on these backends (on the running loop)."""
    limits = build_run_limits(settings)
    inline: InlineExecutor | None = None
    if settings.runs.executor == "inline":

        async def execute(spec: RunSpec, slot_key: str | None, gates: StartGates | None) -> Any:
            return await run_to_end(backends, runners, limits, spec, slot_key=slot_key, gates=gates)

        inline = InlineExecutor(execute)
    return Runs(
        settings=settings,
        db=resources.db,
        cache=resources.cache,
        models=models,
        backends=backends,
        runners=runners,
        limits=limits,
        inline=inline,
    )


# --- conduit worker | beat -----------------------------------------------------------------


def worker_celery(settings: Settings) -> Celery:
    """The Celery app of a `conduit worker` or `conduit beat` process, its tasks' context
    attached (built after the pool's fork, per process) and the signal handlers connected."""
    configure_logging(settings.log.level, settings.log.json_format)
    app = create_celery(settings)
    context = TaskContext(functools.partial(build_task_parts, settings, app))
    attach(app, context)
    connect_handlers(lambda: context.get().resources)
    grace = max(0.0, settings.tasks.shutdown_timeout - DRAIN_RESERVE)

    def drain(**_: Any) -> None:
        # Celery's warm shutdown waits for the tasks in flight: runs get `grace` seconds to
        # end, then are cut short, so that an orchestrator's kill never lands on a live run.
        # This runs in the SIGTERM handler, on the thread the signal interrupted: it must not
        # build the parts (that thread may hold the build's lock: a deadlock until SIGKILL).
        # Not built yet means no run has started in this process: nothing to cut short.
        parts = context.built()
        if parts is None:
            return
        timer = threading.Timer(grace, parts.live.cut_short)
        timer.daemon = True
        timer.start()

    celery_signals.worker_shutting_down.connect(drain, weak=False)
    app.set_current()
    app.set_default()
    if settings.metrics.worker_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics.worker_port, addr="127.0.0.1")
    return app


# --- the CLI ------------------------------------------------------------------------------------


@contextmanager
def cli_process(settings: Settings) -> Iterator[Resources]:
    """The resources of a CLI command (the schema prepared, signal handlers connected); closed
    when the command ends."""
    resources = build_resources(settings)
    disconnect = connect_handlers(lambda: resources)
    try:
        prepare_schema(resources.db)
        yield resources
    finally:
        disconnect()
        resources.db.dispose()


# --- conduit serve --------------------------------------------------------------------------


@dataclass
class Server:
    """A server process's parts. `start` builds what needs no event loop (in a thread);
    `start_runs` the run machinery on the server's loop; `stop` takes both down in reverse."""

    settings: Settings
    resources: Resources
    models: ModelRegistry
    runners: AppRunners
    celery: Celery
    relay: OutboxRelay
    worker: Any  # the embedded Celery worker, or None (distributed)
    token_policy: TokenPolicy
    storage: LocalStorage
    retriever: Retriever  # the API's dataset searches and the inline executor's runs share it
    readiness_checks: dict[str, Callable[[], None]]
    disconnect_handlers: Callable[[], None]
    runs: Runs | None = None
    _task_parts: TaskParts | None = field(default=None, repr=False)
    _takeover: asyncio.Task[None] | None = field(default=None, repr=False)

    @classmethod
    def start(cls, settings: Settings) -> Server:
        resources = build_resources(settings)
        disconnect = connect_handlers(lambda: resources)
        stops: list[Callable[[], None]] = [resources.db.dispose, disconnect]
        try:
            return cls._start(settings, resources, disconnect, stops)
        except BaseException:
            for stop in reversed(stops):  # what started before the failure, in reverse
                stop()
            raise

    @classmethod
    def _start(
        cls,
        settings: Settings,
        resources: Resources,
        disconnect: Callable[[], None],
        stops: list[Callable[[], None]],
    ) -> Server:
        prepare_schema(resources.db)
        # Runs left `running` by a dead process end before anything could start one: the
        # embedded worker (started below) and the recovered outbox rows would otherwise be
        # ended under a live run.
        _end_dead_runs(resources.db, settings)
        models = build_models(settings, resources.db)
        retriever = build_retriever(settings, resources.db)
        runners = build_runners(settings, models, resources.db, retriever)
        parts = TaskParts(
            resources=resources,
            models=models,
            runners=runners,
            limits=build_run_limits(settings),
        )
        if not settings.redis.url:
            # In-process backends need no event loop: built before the embedded worker starts,
            # so that even the runs it recovers at start write the logs this server serves.
            parts.backends = build_run_backends(settings)
        celery = create_celery(settings)
        attach(celery, TaskContext.of_parts(parts))
        worker = None
        if settings.mode == "embedded":
            from conduit.tasks.embedded import EmbeddedWorker

            recover_unfinished(resources.db)
            worker = EmbeddedWorker(
                celery,
                concurrency=settings.tasks.embedded_concurrency,
                schedule_path=settings.data.dir / "beat-schedule",
            )
            worker.start()
            stops.append(worker.stop)
        relay = _outbox_relay(settings, resources.db, celery)
        resources.db.on_outbox_write(relay.nudge)
        relay.start()
        stops.append(relay.stop)
        relay.nudge()
        server = cls(
            settings=settings,
            resources=resources,
            models=models,
            runners=runners,
            celery=celery,
            relay=relay,
            worker=worker,
            token_policy=TokenPolicy(
                secret_key=settings.secret_key(),
                access_minutes=settings.auth.access_token_minutes,
                refresh_days=settings.auth.refresh_token_days,
            ),
            storage=local_storage(settings),
            retriever=retriever,
            readiness_checks=_readiness_checks(settings, resources.db, celery, worker),
            disconnect_handlers=disconnect,
            _task_parts=parts,
        )
        logger.info(
            "conduit %s ready: %s mode, database %s, cache %s",
            conduit.__version__,
            settings.mode,
            resources.db.dialect,
            type(resources.cache).__name__,
        )
        return server

    async def start_runs(self) -> Runs:
        """The run machinery on the running loop (Redis clients belong to the loop that made
        them): backends and the inline executor."""
        settings, resources = self.settings, self.resources
        parts = self._task_parts
        shared = parts.backends if parts is not None else None
        backends = shared if shared is not None else build_run_backends(settings)
        if isinstance(resources.cache, RedisCache) and settings.redis.url:
            # The hot path's cache reads (API key, app, end user) on this loop, not in a thread.
            resources.cache.attach_async(
                build_async_redis(settings.redis.url, socket_timeout=settings.redis.socket_timeout)
            )
        self.runs = build_runs(settings, resources, self.models, self.runners, backends)
        # Every server takes over dead runs: in the embedded mode, a run whose result could
        # not be stored (the database locked past its retries) is one.
        self._takeover = asyncio.get_running_loop().create_task(
            _take_over_continually(resources.db, backends, settings), name="run-takeover"
        )
        _warn_without_model(settings)
        return self.runs

    async def stop(self) -> None:
        if self._task_parts is not None:
            # Runs of the embedded worker (the celery executor, embedded): cut short like the
            # inline ones below, once uvicorn's grace is over.
            self._task_parts.live.cut_short()
        if self._takeover is not None:
            self._takeover.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._takeover
        runs = self.runs
        if runs is not None:
            if runs.inline is not None:
                # uvicorn has already waited for open responses (`streams_grace`): what is
                # still running now is cut short and stored as stopped with its partial answer,
                # within what is left of the shutdown budget (`DRAIN_RESERVE`).
                await runs.inline.drain(grace=0.5, cancel_wait=DRAIN_RESERVE - 1.0)
            await self.models.aclose()
            await runs.backends.aclose()
            if isinstance(self.resources.cache, RedisCache):
                await self.resources.cache.detach_async()
        await asyncio.to_thread(self._stop_threads)

    def _stop_threads(self) -> None:
        self.relay.stop()
        if self.worker is not None:
            self.worker.stop()
        self.disconnect_handlers()
        self.resources.db.dispose()
        logger.info("conduit stopped")


def _end_dead_runs(db: Database, settings: Settings) -> None:
    if settings.mode == "embedded":
        with db.transaction() as session:
            end_interrupted_runs(session)  # one process: nothing else can be running them
    # Distributed: the servers' takeover loops end dead runs within a second.


async def _take_over_continually(db: Database, backends: RunBackends, settings: Settings) -> None:
    """Every `takeover_interval` (jittered, so that servers do not look in step): take over
    the runs whose executor is gone (`services/runs/reaper.py`) and resume the documents whose
    indexer is gone (`services/datasets/indexing.py`) — once this server has reached
    the database for a whole lease: after an outage (or its own start), live executors renew
    their leases first, where a lease that lapsed while nobody could renew it proves nothing."""
    interval, lease = settings.runs.takeover_interval, settings.runs.lease_seconds
    loop = asyncio.get_running_loop()
    reachable_since: float | None = None
    swept = 0.0
    while True:
        try:
            await asyncio.to_thread(db.ping)
        except Exception:
            reachable_since = None
        else:
            reachable_since = reachable_since or loop.time()
            if loop.time() - reachable_since >= lease:
                try:
                    await take_over_dead_runs(db, backends, settings)
                except Exception:
                    logger.warning("taking over dead runs failed; retrying", exc_info=True)
                try:
                    await asyncio.to_thread(resume_stalled_documents, db, settings.rag)
                except Exception:
                    logger.warning("resuming stalled documents failed; retrying", exc_info=True)
                if loop.time() - swept >= settings.workflow.human_input_sweep_seconds:
                    swept = loop.time()
                    try:
                        await human_input.resume_due(db, settings, backends)
                    except Exception:
                        logger.warning("resuming human-input runs failed", exc_info=True)
        await asyncio.sleep(interval * random.uniform(0.75, 1.25))


def _warn_without_model(settings: Settings) -> None:
    if settings.model.base_url:
        return
    from conduit.core.llm.local import local_model_available

    available, how_to = local_model_available()
    if not available:
        logger.warning("no model: %s", how_to)


def _outbox_relay(settings: Settings, db: Database, celery: Celery) -> OutboxRelay:
    """The server's outbox relay. Distributed, it also re-sends what the broker lost: at once
    when a Redis broker says it lost messages (`tasks/broker_loss.py`), and as a last resort
    what stayed unstarted past the broker's visibility timeout or ran past its time limit."""
    policy = RelayPolicy(
        interval=settings.tasks.relay_interval,
        batch=settings.tasks.relay_batch,
        gather=settings.tasks.relay_gather,
        max_attempts=settings.tasks.max_send_attempts,
    )
    if settings.mode == "embedded":
        return OutboxRelay(db, publisher(celery), policy)
    policy = dataclasses.replace(
        policy,
        redeliver_dispatched_after=settings.broker.visibility_timeout + 60,
        # A task still `running` past its hard limit has no worker left; a run's task may take
        # the run's own limit + 20 s.
        redeliver_running_after=max(settings.tasks.time_limit, longest_run(settings) + 20) + 60,
    )
    watch = None
    if is_redis_url(settings.broker.url):
        watch = RedisBrokerWatch(build_redis(str(settings.broker.url), socket_timeout=2.0))
    return OutboxRelay(db, publisher(celery), policy, watch)


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
        # Each queue this server sends to has a live worker consuming it (its error names the
        # queues without one): the broker answering is not enough, nothing would run.
        broker_url = str(settings.broker.url)
        checks["consumers"] = (
            redis_consumer_check(broker_url, SERVER_QUEUES)
            if is_redis_url(broker_url)
            else amqp_consumer_check(celery, SERVER_QUEUES)
        )
    return checks


__all__ = [
    "RunBackends",
    "Server",
    "build_models",
    "build_resources",
    "build_retriever",
    "build_runners",
    "build_runs",
    "build_task_parts",
    "cli_process",
    "model_defaults",
    "worker_celery",
]
