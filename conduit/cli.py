"""The `conduit` command: serve | worker | beat | migrate | create-admin | quickstart | settings."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from conduit.infra.settings import Settings, SettingsError, describe_settings, load_settings


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _settings(**overrides: Any) -> Settings:
    """Apply CLI flags as environment variables (so that child processes see them), then load."""
    for name, value in overrides.items():
        if value is not None:
            os.environ[name] = str(value)
    try:
        return load_settings()
    except SettingsError as error:
        _fail(str(error))


@click.group()
@click.version_option(package_name="conduit")
def main() -> None:
    """Conduit: an LLM application server speaking Dify's Service API."""


@main.command()
@click.option("--host", default=None, help="Address to bind (CONDUIT_HTTP_HOST).")
@click.option("--port", type=int, default=None, help="Port to bind (CONDUIT_HTTP_PORT).")
@click.option("--workers", type=int, default=None, help="Server processes (CONDUIT_HTTP_WORKERS).")
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the HTTP server (embedded mode also runs Celery inside it)."""
    settings = _settings(
        CONDUIT_HTTP_HOST=host, CONDUIT_HTTP_PORT=port, CONDUIT_HTTP_WORKERS=workers
    )
    _check_port_free(settings.http.host, settings.http.port)
    if settings.http.workers > 1:
        # Metrics of every server process are aggregated from files in this folder.
        folder = (settings.data.dir / "prometheus").resolve()
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    settings.data.dir.mkdir(parents=True, exist_ok=True)
    settings.secret_key()  # generate it once here, before several processes race to

    import uvicorn

    uvicorn.run(
        "conduit.api.app:create_app",
        factory=True,
        host=settings.http.host,
        port=settings.http.port,
        workers=settings.http.workers,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.http.streams_grace),
        backlog=4096,
    )


def _check_port_free(host: str, port: int) -> None:
    """Stop before anything starts (schema, worker threads, the "ready" line) when host:port is
    taken: uvicorn binds only after the app's startup, then dies on "address already in use"."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return  # uvicorn reports an unknown host itself
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn's own bind
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                    _fail(
                        f"{where} is already in use (another conduit serve?); "
                        "stop it or pass --port"
                    )


def _distributed(settings: Settings, command: str) -> None:
    if settings.mode != "distributed":
        _fail(
            f"CONDUIT_BROKER_URL: must be set for `conduit {command}` "
            "(in the embedded mode `conduit serve` runs the tasks itself)"
        )


@main.command()
@click.option("-Q", "--queues", default=None, help="Comma-separated queues (default: all).")
@click.option(
    "-c", "--concurrency", type=int, default=4, show_default=True, help="Worker threads/processes."
)
@click.option(
    "--pool",
    type=click.Choice(["threads", "prefork", "solo"]),
    default="threads",
    show_default=True,
)
@click.option(
    "-I", "--include", default=None, help="Extra task modules to import (comma-separated)."
)
@click.option(
    "--background-concurrency",
    type=int,
    default=2,
    show_default=True,
    help="Without -Q: threads of the pool of its own that runs the `background` queue (model "
    "calls off a run's path: conversation naming), a supervised child process; 0: one pool "
    "for every queue.",
)
def worker(
    queues: str | None,
    concurrency: int,
    pool: str,
    include: str | None,
    background_concurrency: int,
) -> None:
    """Run a Celery worker (distributed mode)."""
    settings = _settings()
    _distributed(settings, "worker")
    from conduit.bootstrap import worker_celery
    from conduit.infra import heap
    from conduit.tasks.celery_app import BACKGROUND_QUEUE, QUEUES

    background: _Supervised | None = None
    if queues is None and background_concurrency > 0:
        queues = ",".join(queue for queue in QUEUES if queue != BACKGROUND_QUEUE)
        background = _Supervised(
            [
                sys.argv[0],
                "worker",
                f"--queues={BACKGROUND_QUEUE}",
                f"--concurrency={background_concurrency}",
                "--pool=threads",
                *([f"--include={include}"] if include else []),
            ],
            hostname=f"{BACKGROUND_QUEUE}@%h",
        )
    app = worker_celery(settings)
    heap.settle()  # before the pool starts (and forks: frozen objects stay shared pages)
    argv = [
        "worker",
        f"--queues={queues or ','.join(QUEUES)}",
        f"--concurrency={concurrency}",
        f"--pool={pool}",
        f"--loglevel={settings.log.level}",
        "--without-heartbeat",
        "--without-mingle",
        "--without-gossip",
    ]
    if os.environ.get(_HOSTNAME_VARIABLE):
        argv.append(f"--hostname={os.environ[_HOSTNAME_VARIABLE]}")
        _follow_parent()
    if include:
        argv.append(f"--include={include}")
    if background is None:
        app.worker_main(argv=argv)
        return
    from celery import signals

    background.start()
    # SIGTERM reaches this process: the background pool drains alongside (its own budget).
    signals.worker_shutting_down.connect(lambda **_: background.stop(), weak=False)
    try:
        app.worker_main(argv=argv)
    finally:
        background.stop()
        background.wait()


_HOSTNAME_VARIABLE = "CONDUIT_WORKER_HOSTNAME"
_PARENT_VARIABLE = "CONDUIT_WORKER_PARENT"


def _follow_parent() -> None:
    """In a supervised child: shut down warmly (SIGTERM to itself) once the worker that
    started it is gone, even killed with -9, and even before this child got this far; a pool
    of its own outliving it would go on consuming its queue with no one to stop it."""
    parent = int(os.environ.get(_PARENT_VARIABLE) or os.getppid())

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class _Supervised:
    """A child `conduit worker` (the background pool), started again when it dies until this
    worker stops; it gets SIGTERM when this one shuts down."""

    def __init__(self, args: list[str], *, hostname: str) -> None:
        self._args = args
        self._env = {**os.environ, _HOSTNAME_VARIABLE: hostname, _PARENT_VARIABLE: str(os.getpid())}
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        self._spawn()
        threading.Thread(target=self._watch, name="background-pool", daemon=True).start()

    def _spawn(self) -> None:
        with self._lock:
            if not self._stopping.is_set():
                self._process = subprocess.Popen(self._args, env=self._env)

    def _watch(self) -> None:
        while not self._stopping.is_set():
            process = self._process
            if process is not None and process.poll() is not None:
                if self._stopping.is_set():
                    return
                click.echo(
                    f"conduit worker: the background pool exited ({process.returncode}); "
                    "starting it again",
                    err=True,
                )
                self._stopping.wait(1.0)
                self._spawn()
            self._stopping.wait(0.5)

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            if self._process is not None and self._process.poll() is None:
                self._process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60.0) -> None:
        if self._process is not None:
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()


@main.command()
def beat() -> None:
    """Run Celery beat, the scheduler of periodic maintenance tasks (distributed mode)."""
    settings = _settings()
    _distributed(settings, "beat")
    from conduit.bootstrap import worker_celery

    app = worker_celery(settings)
    settings.data.dir.mkdir(parents=True, exist_ok=True)
    schedule = settings.data.dir / "beat-schedule"
    app.start(argv=["beat", f"--schedule={schedule}", f"--loglevel={settings.log.level}"])


@main.command()
@click.option("--revision", default="head", show_default=True, help="Revision to upgrade to.")
@click.option("--downgrade", "down_to", default=None, help="Downgrade to this revision instead.")
def migrate(revision: str, down_to: str | None) -> None:
    """Apply the database migrations (Alembic)."""
    settings = _settings()
    from conduit.infra.db import Database, build_engine
    from conduit.infra.schema import migrate as migrate_schema

    db = Database(build_engine(settings.database_url, null_pool=True))
    try:
        if down_to:
            migrate_schema(db, down_to, down=True)
            click.echo(f"downgraded to {down_to}")
        else:
            migrate_schema(db, revision)
            click.echo(f"database at {revision} ({settings.database_url.split('://')[0]})")
    finally:
        db.dispose()


def _ask(value: str | None, label: str, hide: bool = False) -> str:
    if value:
        return value
    if sys.stdin.isatty():
        return str(click.prompt(label, hide_input=hide, confirmation_prompt=hide))
    _fail(f"--{label.lower()} is required when not running interactively")


@main.command("create-admin")
@click.option("--email", default=None, help="The admin's email.")
@click.option("--password", default=None, help="The admin's password (8+ characters).")
@click.option("--workspace", default=None, help="Name of the admin's workspace.")
@click.option("--name", default=None, help="Display name (default: from the email).")
def create_admin(
    email: str | None, password: str | None, workspace: str | None, name: str | None
) -> None:
    """Create an owner account and its workspace (reused when the email exists)."""
    settings = _settings()
    email = _ask(email, "Email")
    password = _ask(password, "Password", hide=True)
    workspace = _ask(workspace, "Workspace")
    from conduit.bootstrap import cli_process
    from conduit.errors import ConduitError
    from conduit.infra.logging import configure_logging
    from conduit.services import accounts

    configure_logging("WARNING")
    try:
        with cli_process(settings) as resources, resources.db.transaction() as session:
            account, tenant, created = accounts.create_admin(
                session, email=email, password=password, workspace=workspace, name=name
            )
    except (ConduitError, SettingsError) as error:
        _fail(str(error))
    verb = "created" if created else "exists"
    click.echo(f"admin {account.email} {verb}; workspace {tenant.name!r} ({tenant.id})")


@main.command()
@click.option(
    "--email", default=None, help="Admin email (default: reuse, else admin@conduit.local)."
)
@click.option("--password", default=None, help="Admin password (default: reuse, else generated).")
def quickstart(email: str | None, password: str | None) -> None:
    """Create (or reuse) an admin, a chat app and an API key; print a curl that streams a chat."""
    settings = _settings()
    from conduit.bootstrap import cli_process
    from conduit.errors import ConduitError
    from conduit.infra.logging import configure_logging
    from conduit.services import quickstart as qs

    configure_logging("WARNING")
    try:
        with cli_process(settings) as resources, resources.db.transaction() as session:
            found = qs.ensure(
                session,
                settings.data.dir,
                email=email,
                password=password,
                server_secret=settings.secret_key(),
            )
    except (ConduitError, SettingsError) as error:
        _fail(str(error))
    qs.save_state(settings.data.dir, found)
    host = "127.0.0.1" if settings.http.host in ("0.0.0.0", "::") else settings.http.host
    base = f"http://{host}:{settings.http.port}"
    model = settings.model.base_url or "the bundled local model (SmolLM2-135M)"
    if not settings.model.base_url:
        from conduit.core.llm.local import local_model_available

        available, how_to = local_model_available()
        if not available:
            model = f"none yet — {how_to}"
    verb = "created" if found.created else "reusing"
    click.echo(f"{verb}: admin {found.email} (password: {found.password})")
    click.echo(f"app {found.app_id} on {model}; API key {found.api_key}")
    click.echo("state kept in " + str(settings.data.dir / "quickstart.json"))
    click.echo("\nWith `conduit serve` running, stream a chat:\n")
    click.echo(
        f"curl -N {base}/v1/chat-messages -H 'Authorization: Bearer {found.api_key}' "
        '-H \'Content-Type: application/json\' -d \'{"inputs": {}, "query": '
        '"What is the capital of France?", "user": "me", '
        '"response_mode": "streaming"}\''
    )


@main.group()
def dataset() -> None:
    """Knowledge bases of a running server."""


@dataset.command("upload")
@click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--dataset", "name", required=True, help="The dataset's name.")
@click.option("--create", is_flag=True, help="Create the dataset when there is none of that name.")
@click.option(
    "--url", default="http://127.0.0.1:5001", show_default=True, help="The server's address."
)
@click.option(
    "--key", envvar="CONDUIT_DATASET_KEY", required=True,
    help="A dataset API key (dataset-…; or CONDUIT_DATASET_KEY).",
)  # fmt: skip
@click.option(
    "--technique", type=click.Choice(["high_quality", "economy"]), default="high_quality",
    show_default=True, help="How new documents are indexed.",
)  # fmt: skip
def dataset_upload(
    paths: tuple[Path, ...], name: str, create: bool, url: str, key: str, technique: str
) -> None:
    """Upload files into a dataset and follow each one's indexing to its end."""
    from conduit.dataset_upload import run_upload

    sys.exit(
        run_upload(list(paths), dataset=name, create=create, url=url, key=key, technique=technique)
    )


@main.command("settings")
def show_settings() -> None:
    """Print every setting with its default and description."""
    rows = describe_settings()
    width = max(len(row[0]) for row in rows)
    for env, kind, default, description in rows:
        click.echo(
            f"{env.ljust(width)}  {kind:<12} default={default or '(unset)'}\n    {description}"
        )


if __name__ == "__main__":
    main()
