"""Shared test helpers: which services answer, fresh databases, private Redis servers,
server and worker processes over real HTTP."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import redis
from sqlalchemy.orm import Session

from conduit.db.models import App, AppMode, Tenant

PG_ADMIN = os.environ.get("CONDUIT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CONDUIT_TEST_REDIS", "redis://127.0.0.1:6379")
# The shared RabbitMQ node: tests use it only as a broker, each in a vhost of its own.
RABBITMQ_URL = os.environ.get("CONDUIT_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672")
MODE = os.environ.get("CONDUIT_TEST_MODE", "embedded")
VENV_BIN = Path(sys.executable).parent
CONDUIT = str(VENV_BIN / "conduit")


def pg_answers() -> bool:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=2):
            return True
    except Exception:
        return False


def redis_answers(url: str = REDIS_URL) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except Exception:
        return False


def rabbitmq_answers(url: str = RABBITMQ_URL) -> bool:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
            return True
    except Exception:
        return False


def missing(what: str) -> None:
    """Skip a test that needs `what`, or fail it in CI (which must run everything)."""
    if os.environ.get("CI") == "true":
        raise AssertionError(f"CI needs {what}")
    import pytest

    pytest.skip(f"needs {what}")


def need_rabbitmq() -> None:
    """A test that uses the shared RabbitMQ node (as a broker, in a vhost of its own)."""
    if not rabbitmq_answers():
        missing(f"RabbitMQ answering at {RABBITMQ_URL}")


def _rabbitmqctl(*args: str) -> None:
    """rabbitmqctl against the shared node (its wrapper runs it as the `rabbitmq` user)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RABBITMQ_")}
    subprocess.run(
        [shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl", "-q", *args],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )


@contextlib.contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """A vhost of our own on the shared RabbitMQ node, deleted afterwards: yields its broker
    URL. The node itself is never stopped or reconfigured."""
    name = f"conduit-t-{uuid.uuid4().hex[:10]}"
    _rabbitmqctl("add_vhost", name)
    try:
        _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield f"{RABBITMQ_URL.rstrip('/')}/{name}"
    finally:
        _rabbitmqctl("delete_vhost", name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new empty PostgreSQL database; dropped afterwards. Yields its SQLAlchemy URL."""
    name = f"conduit_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    try:
        yield f"{base.replace('postgresql://', 'postgresql+psycopg://')}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _test_databases() -> range:
    """Databases 1-12 are for tests; 13-15 are left to benchmarks. Under pytest-xdist each
    worker process takes a slice of its own (gw0 the first), since leases are per process."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker:
        return range(1, 13)
    share = 12 // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if share < 4:
        raise RuntimeError("at most 3 pytest-xdist workers: each needs 4 test Redis databases")
    # xdist replaces a crashed worker with the next id (gw2 of two): it takes the slice of
    # the one it replaces.
    count = 12 // share
    first = 1 + share * (int(worker.removeprefix("gw")) % count)
    return range(first, first + share)


# A database is leased to one user at a time (a stack, a fixture) and given back when it is
# done, so a long run never runs out.
TEST_DATABASES = _test_databases()
_leased: set[int] = set()


def fresh_redis_url() -> str:
    """Lease a Redis database number of the shared server, flushed; `release_redis_url` it."""
    number = next((n for n in TEST_DATABASES if n not in _leased), None)
    if number is None:
        raise RuntimeError("every test Redis database is leased: release them when done")
    _leased.add(number)
    url = f"{REDIS_URL}/{number}"
    redis.Redis.from_url(url).flushdb()
    return url


def release_redis_url(url: str | None) -> None:
    if url and url.startswith(REDIS_URL + "/"):
        _leased.discard(int(url.rsplit("/", 1)[1]))


class PrivateRedis:
    """A redis-server of our own on a free port, so a test can stop and start it."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: redis_answers(self.url), what=f"redis on {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster of our own (initdb + pg_ctl on a free port), so that a test
    may stop and restart it without touching the shared server. Run as the `postgres` user when
    the tests run as root (initdb refuses root)."""

    def __init__(self) -> None:
        self.port = free_port()
        # Its own folder under /tmp: the `postgres` user cannot reach into pytest's (0700).
        self.home = Path(tempfile.mkdtemp(prefix="conduit-pg-"))
        self.datadir = self.home / "data"
        self.logfile = self.home / "postgres.log"
        self.bindir = Path(sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1])

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its `conduit` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/conduit"

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def create(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.home, "postgres")
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()
        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as conn:
            conn.execute("CREATE DATABASE conduit")

    def start(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w",
            "-o", f"-p {self.port} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.home, ignore_errors=True)


RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
RABBITMQCTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


class PrivateRabbitMQ:
    """A RabbitMQ node of our own (its name, ports, config, data and logs under `workdir`), so
    that a test may stop and restart it; the shared node on 5672 is never touched. Its data
    survives `stop()` / `start()` (a restart); started directly (not through the Debian
    wrapper, which runs the node as the `rabbitmq` user) with its own Erlang cookie."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.node = f"conduit-test-{self.port}@localhost"
        self.process: subprocess.Popen[bytes] | None = None
        base = workdir / f"rabbitmq-{self.port}"
        base.mkdir(parents=True, exist_ok=True)
        (base / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq-env.conf").write_text("")
        self.env = {
            **{key: value for key, value in os.environ.items() if not key.startswith("RABBITMQ_")},
            "HOME": str(base),  # its Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(base / "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        self.log_path = base / "stdout.log"

    @staticmethod
    def available() -> bool:
        return Path(RABBITMQ_SERVER).exists() and Path(RABBITMQCTL).exists()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self, timeout: float = 60.0) -> float:
        """Start the node; returns the seconds until it accepted an AMQP connection."""
        began = time.monotonic()
        handle = open(self.log_path, "ab")  # noqa: SIM115  (kept open for the node's lifetime)
        self.process = subprocess.Popen(
            [RABBITMQ_SERVER],
            env=self.env,
            cwd=self.workdir,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        handle.close()

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"rabbitmq-server exited:\n{self.log()[-3000:]}")
            return rabbitmq_answers(self.url)

        wait_for(up, timeout=timeout, interval=0.2, what=f"RabbitMQ node {self.node}")
        return time.monotonic() - began

    def stop(self) -> None:
        """Stop the node the way an operator restarts it (`rabbitmqctl stop`: its durable
        queues and persistent messages are on disk), and wait until it is gone."""
        if self.process is None:
            return
        subprocess.run(
            [RABBITMQCTL, "-n", self.node, "stop"],
            env=self.env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def wait_for(check, *, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as error:  # the thing we wait for may raise while it is not ready
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error!r})")


class Process:
    """A `conduit` subprocess with its output in a file."""

    def __init__(self, args: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> None:
        self.args = args
        self.env = env
        self.cwd = cwd
        self.log_path = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        handle = open(self.log_path, "ab")  # noqa: SIM115  (kept open for the child's lifetime)
        self.process = subprocess.Popen(
            [CONDUIT, *self.args],
            env=self.env,
            cwd=self.cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.process is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def run_sql(database_url: str, statement: str, **params: object) -> list[tuple[object, ...]]:
    """Run one SQL statement on its own connection (for assertions); its rows, if any."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(database_url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.begin() as conn:
            result = conn.execute(sqlalchemy.text(statement), params)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


class Stack:
    """A running Conduit: the server and, in the distributed mode, a `conduit worker`."""

    def __init__(self, workdir: Path, env: dict[str, str], *, distributed: bool) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.env = {**env, "CONDUIT_HTTP_PORT": str(self.port)}
        self.distributed = distributed
        self.server = Process(["serve"], env=self.env, cwd=workdir, log=workdir / "server.log")
        self.worker = (
            Process(["worker", "-c", "4"], env=self.env, cwd=workdir, log=workdir / "worker.log")
            if distributed
            else None
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return (
            self.env.get("CONDUIT_DATABASE_URL")
            or f"sqlite:///{self.workdir / '.conduit' / 'conduit.db'}"
        )

    def sql(self, statement: str, **params: object) -> list[tuple[object, ...]]:
        """Run one SQL statement against the stack's database (for assertions)."""
        return run_sql(self.database_url, statement, **params)

    def start(self) -> None:
        if self.worker is not None and not self.worker.alive:
            self.worker.start()
        self.server.start()
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        def up() -> bool:
            if self.server.process is not None and self.server.process.poll() is not None:
                raise AssertionError("server exited:\n" + self.server.log()[-3000:])
            return httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200

        wait_for(up, timeout=timeout, what="the server")

    def stop(self) -> None:
        self.server.stop()
        if self.worker is not None:
            self.worker.stop()

    def logs(self) -> str:
        return self.server.log() + (self.worker.log() if self.worker is not None else "")

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=15)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CONDUIT, *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )


def add_chat_app(session: Session, tenant_name: str) -> App:
    """A new workspace and a chat app in it (on the default model), flushed."""
    tenant = Tenant(name=tenant_name)
    session.add(tenant)
    session.flush()
    app = App(tenant_id=tenant.id, name="chat", mode=AppMode.CHAT, model_config_={})
    session.add(app)
    session.flush()
    return app


def assert_envelope(response: httpx.Response, status: int, code: str, mentions: str = "") -> None:
    """`response` is Conduit's error envelope: exactly `{code, message, status}`, with this
    status and code, its message mentioning `mentions`, and the request's id in a header."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "status"}, body
    assert (body["code"], body["status"]) == (code, status), body
    assert mentions in body["message"], body
    assert "x-request-id" in response.headers
