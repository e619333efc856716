"""The fault-injection harness: the distributed deployment a new user would run, with its own
services so that a test may kill any of them, clients that stream and resume as a real client
does, and the audit every scenario ends with.

`FaultStack`: two `conduit serve` processes and a `conduit worker`, PostgreSQL (a fresh database
of the shared server, which is never stopped; a scenario that restarts PostgreSQL brings a
cluster of its own), a private `redis-server` as cache, event log and (by default) broker, and
the fake model streaming 200 words 20 ms apart.

`Client`: one streaming chat run as a client makes it. It learns the run's task id from the
response headers, and when its connection is cut it resumes on the other server with
`Last-Event-ID` until the run's terminal event (or gives up at a deadline).

`audit`: what every scenario asserts, counted: accepted runs lost (no row, or no terminal event
reachable), events duplicated (a frame id seen twice by a client, or in the replay), runs left
`running`, and whether each run's stream (replayed from its log) equals its stored answer.

`report`: a scenario's row for `bench/faults.py` (appended as JSON to `$CONDUIT_FAULTS_REPORT`).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from conduit.db.migrations import upgrade
from tests import support
from tests.conftest import stack_env
from tests.e2e.conftest import create_admin, login
from tests.e2e.sse import Frame, frames

ANSWER_WORDS = 200
PACE_MS = 20
TERMINAL = ("message_end", "error")


def stream_error(frame: Frame) -> bool:
    """The stream's own `error` (it lost Redis, say), not the run's: it carries no id, and a
    client resumes from its last event instead of ending."""
    return frame.event == "error" and frame.id is None


def assembled(frames: list[Frame]) -> str:
    """The answer a client shows from these events: each `message` (an agent's
    `agent_message`) adds to it, a `message_replace` replaces it (a taker's, with the stored
    answer)."""
    answer = ""
    for frame in frames:
        if frame.event in ("message", "agent_message"):
            answer += str(frame.data.get("answer", ""))
        elif frame.event == "message_replace":
            answer = str(frame.data.get("answer", ""))
    return answer


def long_answer(words: int = ANSWER_WORDS) -> str:
    return " ".join(f"w{index}" for index in range(words))


class FaultStack:
    """Two servers and a worker over private Redis and a fresh PostgreSQL database."""

    def __init__(
        self,
        workdir: Path,
        *,
        upstream_url: str,
        database_url: str,
        redis: support.PrivateRedis,
        broker_url: str | None = None,
        executor: str = "celery",
        servers: int = 2,
        worker_concurrency: int = 4,
        **extra: str,
    ) -> None:
        self.workdir = workdir
        self.redis = redis
        self.postgres: support.PrivatePostgres | None = None
        self.executor = executor
        env = stack_env(
            workdir,
            database_url=database_url,
            redis_url=redis.url,
            broker_url=broker_url or redis.url.rsplit("/", 1)[0] + "/1",
            CONDUIT_MODEL_BASE_URL=upstream_url,
            CONDUIT_MODEL_MAX_RETRIES="0",
            CONDUIT_RUNS_EXECUTOR=executor,
            **extra,
        )
        self.env = env
        self.ports = [support.free_port() for _ in range(servers)]
        self.servers = [
            support.Process(
                ["serve"],
                env={**env, "CONDUIT_HTTP_PORT": str(port)},
                cwd=workdir,
                log=workdir / f"server{index}.log",
            )
            for index, port in enumerate(self.ports)
        ]
        self.worker = support.Process(
            ["worker", "-c", str(worker_concurrency)],
            env=env,
            cwd=workdir,
            log=workdir / "worker.log",
        )

    # --- what tests.e2e.conftest's helpers expect of a stack ---------------------------------
    @property
    def base_url(self) -> str:
        return self.url(0)

    @property
    def database_url(self) -> str:
        return self.env["CONDUIT_DATABASE_URL"]

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=15)

    def sql(self, statement: str, **params: object) -> list[tuple[object, ...]]:
        return support.run_sql(self.database_url, statement, **params)

    # --- processes -----------------------------------------------------------------------------
    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}"

    def start(self) -> None:
        self.worker.start()
        for index in range(len(self.servers)):
            self.start_server(index)

    def start_server(self, index: int) -> None:
        server = self.servers[index]
        if not server.alive:
            server.start()
        self.wait_ready(index)

    def wait_ready(self, index: int, timeout: float = 30.0) -> None:
        server = self.servers[index]

        def up() -> bool:
            if server.process is not None and server.process.poll() is not None:
                raise AssertionError(f"server {index} exited:\n" + server.log()[-3000:])
            return httpx.get(f"{self.url(index)}/health", timeout=1).status_code == 200

        support.wait_for(up, timeout=timeout, what=f"server {index}")

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.worker.stop()

    def logs(self) -> str:
        return "".join(process.log() for process in [*self.servers, self.worker])

    def error_lines(self) -> list[str]:
        """The ERROR lines its processes logged (first 600 characters of each): what an
        assertion quotes, so that a failure on CI says what the servers saw."""
        return [line[:600] for line in self.logs().splitlines() if '"level":"ERROR"' in line]


@contextlib.contextmanager
def fault_stack(
    workdir: Path, upstream_url: str, *, own_postgres: bool = False, **options: Any
) -> Iterator[FaultStack]:
    """A started `FaultStack` with its own Redis and database, torn down afterwards;
    `own_postgres`: on a PostgreSQL cluster of its own (`stack.postgres`), which the test may
    stop and restart."""
    workdir.mkdir(parents=True, exist_ok=True)
    redis = support.PrivateRedis(workdir)
    redis.start()
    postgres = support.PrivatePostgres() if own_postgres else None
    try:
        with contextlib.ExitStack() as resources:
            if postgres is not None:
                postgres.create()
                database_url = postgres.url
            else:
                database_url = resources.enter_context(support.fresh_pg_database())
            upgrade(database_url)
            stack = FaultStack(
                workdir,
                upstream_url=upstream_url,
                database_url=database_url,
                redis=redis,
                **options,
            )
            stack.postgres = postgres
            try:
                stack.start()
                yield stack
            finally:
                stack.stop()
    finally:
        if postgres is not None:
            postgres.destroy()
        redis.stop()


@dataclass
class ServiceKey:
    """An app and its Service API key on a fault stack."""

    app_id: str
    key: str


def chat_app(
    stack: FaultStack,
    *,
    max_active_requests: int | None = None,
    mode: str = "chat",
    **config: Any,
) -> ServiceKey:
    """A chat app (or another `mode` of chat app, with more of its model `config`) on the
    fake model, with a Service API key (made through the console)."""
    admin = login(stack, *create_admin(stack))  # type: ignore[arg-type]
    try:
        body: dict[str, Any] = {
            "name": "fault app",
            "mode": mode,
            "model_config": {"pre_prompt": "You are a test assistant.", **config},
        }
        created = admin.client.post("/console/api/apps", json=body)
        assert created.status_code == 201, created.text
        app_id = created.json()["data"]["id"]
        if max_active_requests is not None:
            limited = admin.client.put(
                f"/console/api/apps/{app_id}", json={"max_active_requests": max_active_requests}
            )
            assert limited.status_code == 200, limited.text
        key = admin.client.post(f"/console/api/apps/{app_id}/api-keys").json()["data"]["token"]
        return ServiceKey(app_id, key)
    finally:
        admin.client.close()


# --- clients ---------------------------------------------------------------------------------


@dataclass
class Client:
    """One streaming chat run, made as a client makes it (see the module's docstring)."""

    stack: FaultStack
    app: ServiceKey
    user: str
    query: str = "hello"
    server: int = 0
    idempotency_key: str | None = None
    auto_generate_name: bool = True
    deadline: float = 90.0
    status: int | None = None  # the start's HTTP status
    task_id: str | None = None
    message_id: str | None = None
    frames: list[Frame] = field(default_factory=list)
    cuts: int = 0
    error: str | None = None
    _thread: threading.Thread | None = None
    first_event: threading.Event = field(default_factory=threading.Event)
    first_event_at: float | None = None  # time.monotonic() of its first event

    def start(self) -> Client:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def ended(self) -> bool:
        return bool(self.frames) and self.frames[-1].event in TERMINAL

    @property
    def answer(self) -> str:
        return assembled(self.frames)

    @property
    def duplicated(self) -> int:
        ids = [f.id for f in self.frames if f.id is not None]
        return len(ids) - len(set(ids))

    def _headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.app.key}"}
        if self.idempotency_key:
            headers["Idempotency-Key"] = self.idempotency_key
        return headers

    def _run(self) -> None:
        started = time.monotonic()
        server = self.server
        try:
            self._start(server)
        except httpx.HTTPError as cut:
            self.cuts += 1
            self.error = repr(cut)
        while not self.ended and time.monotonic() - started < self.deadline:
            if self.task_id is None:
                if self.status is not None and self.status >= 400:
                    return  # refused: nothing was accepted
                if not self.idempotency_key:
                    return  # cut before the headers: the client cannot know its run
                server = (server + 1) % len(self.stack.servers)
                with contextlib.suppress(httpx.HTTPError):
                    self._start(server)
                continue
            server = (server + 1) % len(self.stack.servers)
            try:
                self._resume(server)
            except httpx.HTTPError as cut:
                self.cuts += 1
                self.error = repr(cut)
                time.sleep(0.2)

    def _start(self, server: int) -> None:
        body = {
            "inputs": {},
            "query": self.query,
            "user": self.user,
            "response_mode": "streaming",
            "auto_generate_name": self.auto_generate_name,
        }
        with httpx.stream(
            "POST",
            f"{self.stack.url(server)}/v1/chat-messages",
            json=body,
            headers=self._headers(),
            timeout=httpx.Timeout(10.0, read=15.0),
        ) as response:
            self.status = response.status_code
            if response.status_code != 200:
                response.read()
                self.error = response.text
                return
            self.task_id = response.headers.get("X-Task-Id")
            self.message_id = response.headers.get("X-Message-Id")
            self._consume(response)

    def _resume(self, server: int) -> None:
        last = next((f.id for f in reversed(self.frames) if f.id is not None), None)
        headers = self._headers()
        if last is not None:
            headers["Last-Event-ID"] = str(last)
        with httpx.stream(
            "GET",
            f"{self.stack.url(server)}/v1/chat-messages/{self.task_id}/events",
            params={"user": self.user},
            headers=headers,
            timeout=httpx.Timeout(10.0, read=15.0),
        ) as response:
            if response.status_code != 200:
                response.read()
                self.error = f"resume {response.status_code}: {response.text}"
                time.sleep(0.5)
                return
            self._consume(response)

    def _consume(self, response: httpx.Response) -> None:
        for frame in frames(response):
            if frame.event == "ping":
                continue
            if stream_error(frame):
                self.cuts += 1
                self.error = f"stream error: {frame.data.get('code')}"
                time.sleep(0.2)
                return
            self.frames.append(frame)
            if self.first_event_at is None:
                self.first_event_at = time.monotonic()
            self.first_event.set()
            if frame.event in TERMINAL:
                return


def replay(stack: FaultStack, app: ServiceKey, user: str, task_id: str) -> list[Frame]:
    """The run's whole log, read from its start on the first server that answers."""
    for index in range(len(stack.servers)):
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.stream(
                "GET",
                f"{stack.url(index)}/v1/chat-messages/{task_id}/events",
                params={"user": user},
                headers={"Authorization": f"Bearer {app.key}"},
                timeout=httpx.Timeout(10.0, read=15.0),
            ) as response,
        ):
            if response.status_code != 200:
                continue
            read = []
            for frame in frames(response):
                if frame.event == "ping" or stream_error(frame):
                    continue
                read.append(frame)
                if frame.event in TERMINAL:
                    break
            return read
    return []


# --- the audit -------------------------------------------------------------------------------


@dataclass
class Audit:
    accepted: int = 0
    lost: int = 0
    duplicated: int = 0
    stuck: int = 0
    mismatched: int = 0
    problems: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert (self.lost, self.duplicated, self.stuck, self.mismatched) == (0, 0, 0, 0), "\n".join(
            self.problems[:20]
        )


def audit(stack: FaultStack, app: ServiceKey, clients: list[Client]) -> Audit:
    """Count what the module's docstring says, over the runs the clients were given."""
    found = Audit()
    for client in clients:
        if client.task_id is None:
            continue  # never accepted (refused, or cut before the headers without a key)
        found.accepted += 1
        rows = stack.sql(
            "SELECT status, answer FROM messages WHERE task_id = :task", task=client.task_id
        )
        if not rows:
            found.lost += 1
            found.problems.append(f"{client.task_id}: no message row")
            continue
        status, stored = str(rows[0][0]), str(rows[0][1])
        if status in ("running", "pending"):
            found.stuck += 1
            found.problems.append(f"{client.task_id}: left {status}")
        if client.duplicated:
            found.duplicated += client.duplicated
            found.problems.append(f"{client.task_id}: a client saw {client.duplicated} twice")
        logged = replay(stack, app, client.user, client.task_id)
        ids = [f.id for f in logged if f.id is not None]
        if len(ids) != len(set(ids)):
            found.duplicated += len(ids) - len(set(ids))
            found.problems.append(f"{client.task_id}: the log repeats ids")
        if (not logged or logged[-1].event not in TERMINAL) and not client.ended:
            found.lost += 1
            found.problems.append(f"{client.task_id}: no terminal event reachable")
        streamed = assembled(logged)
        if logged and streamed != stored:
            found.mismatched += 1
            found.problems.append(
                f"{client.task_id}: log has {len(streamed)} chars, stored {len(stored)} ({status})"
            )
        if client.ended and client.answer != stored:
            found.mismatched += 1
            found.problems.append(
                f"{client.task_id}: the client got {len(client.answer)} chars, "
                f"stored {len(stored)} ({status})"
            )
    return found


def wait_none_running(stack: FaultStack, timeout: float) -> float:
    """Seconds until no run is left `running` (raises past `timeout`)."""
    began = time.monotonic()
    support.wait_for(
        lambda: not stack.sql("SELECT 1 FROM messages WHERE status = 'running' LIMIT 1"),
        timeout=timeout,
        interval=0.1,
        what="no run left running",
    )
    return time.monotonic() - began


@dataclass
class Row:
    """One line of `bench/faults.py`'s table."""

    fault: str
    in_flight: int
    lost: int
    duplicated: int
    stuck: int
    recovery_s: float
    note: str = ""


def report(row: Row) -> None:
    print(f"\nFAULT ROW {json.dumps(asdict(row))}")
    path = os.environ.get("CONDUIT_FAULTS_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(asdict(row)) + "\n")
