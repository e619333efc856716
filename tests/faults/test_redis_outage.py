"""Redis stopped for 20 s, then restarted empty, under a light load of chat runs (a new
streaming run every half second on alternating servers, each streaming 200 words 20 ms apart),
with the inline executor and with the celery executor.

Redis is the cache, the run event logs, the stop registry and the limiter here; the broker is
a Redis of its own, or (as issue 20 saw it, celery executor) a database of the very Redis that
goes down: the worker then survives its broker's outage and the outbox sends again what the
emptied broker lost (ADR 0009). During the outage every request
either succeeds or answers 503 with `Retry-After` (a run's start: `redis_unavailable`), never a
500 and never later than a few seconds; requests that need no Redis (an app's parameters, the
console) keep working on the database; `/ready` names Redis. Runs in flight go on: their
writers keep their events and write them again, whole, into the empty Redis; their clients,
whose streams end with the stream's own error, resume with `Last-Event-ID`. After the return
the first run started succeeds, `/ready` is 200 within about a second, and the audit finds
nothing lost, duplicated or left `running`, and every stream equal to its stored answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import support
from tests.e2e.conftest import create_admin, login, service_app
from tests.faults.harness import (
    Client,
    FaultStack,
    Row,
    ServiceKey,
    audit,
    fault_stack,
    report,
    wait_none_running,
)

OUTAGE = 20.0
START_EVERY = 0.5  # seconds between new runs: light load
PROBE_EVERY = 0.25
BLOCKING_EVERY = 8  # probes: a blocking run every 2 s
SLOW = 3.0  # seconds: no answer may take longer, outage or not
READY_AFTER = 5.0  # seconds after Redis answers again, /ready must be 200 (the recovery target;
# it is 0.1–1.6 s on a quiet 2-core machine)


@pytest.fixture(
    params=[("inline", "own"), ("celery", "own"), ("celery", "same")],
    ids=["inline", "celery", "celery-broker-on-the-same-redis"],
    scope="module",
)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, slow_upstream: Any
) -> Iterator[FaultStack]:
    """A fault stack whose broker is a Redis of its own, or (as issue 20 saw it) a database of
    the very Redis that goes down."""
    executor, broker_kind = request.param
    workdir = tmp_path_factory.mktemp(f"redis-outage-{executor}-{broker_kind}")
    broker = support.PrivateRedis(workdir)
    if broker_kind == "own":
        broker.start()
    try:
        with fault_stack(
            workdir / "stack",
            slow_upstream.base_url,
            executor=executor,
            broker_url=broker.url if broker_kind == "own" else None,
            CONDUIT_REDIS_RETRY_AFTER="0.5",
            # Room for the load: a 4 s run every 0.5 s and a blocking one every 2 s is 10 at
            # once; with fewer slots the queue grows and a blocking run waits its turn for
            # longer than its client does.
            worker_concurrency=16,
            # The limiter takes part: a slot and a rate per run.
            CONDUIT_RUNS_MAX_ACTIVE_PER_APP="100",
            CONDUIT_RUNS_REQUESTS_PER_MINUTE_PER_KEY="100000",
        ) as started:
            yield started
    finally:
        broker.stop()


@dataclass
class Answer:
    """One probe request's outcome."""

    what: str
    status: int
    began: float  # time.monotonic()
    seconds: float
    retry_after: str | None = None
    code: str | None = None


@dataclass
class Load:
    """A new streaming run every `START_EVERY` s and a probe of each kind every `PROBE_EVERY`
    s, alternating servers, until stopped; everything it saw is kept."""

    stack: FaultStack
    app: ServiceKey
    console_token: str
    clients: list[Client] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        for target in (self._start_runs, self._probe):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _start_runs(self) -> None:
        index = 0
        while not self._stop.is_set():
            client = Client(self.stack, self.app, user=f"load-{index}", server=index % 2)
            self.clients.append(client.start())
            index += 1
            self._stop.wait(START_EVERY)

    def _probe(self) -> None:
        rounds = 0
        service = {"Authorization": f"Bearer {self.app.key}"}
        console = {"Authorization": f"Bearer {self.console_token}"}
        body = {"inputs": {}, "query": "hi", "user": "prober", "response_mode": "blocking"}
        while not self._stop.is_set():
            base = self.stack.url(rounds % 2)
            probes = [
                ("parameters", "GET", f"{base}/v1/parameters", service, None),
                ("console app", "GET", f"{base}/console/api/apps/{self.app.app_id}", console, None),
            ]
            if rounds % BLOCKING_EVERY == 0:
                probes.append(("blocking run", "POST", f"{base}/v1/chat-messages", service, body))
            for what, method, url, headers, payload in probes:
                self.answers.append(_ask(what, method, url, headers, payload))
            rounds += 1
            self._stop.wait(PROBE_EVERY)


def _ask(
    what: str, method: str, url: str, headers: dict[str, str], payload: dict[str, Any] | None
) -> Answer:
    began = time.monotonic()
    try:
        response = httpx.request(method, url, headers=headers, json=payload, timeout=15)
    except httpx.HTTPError as error:
        return Answer(what, 0, began, time.monotonic() - began, code=repr(error))
    code = None
    if response.status_code >= 400:
        code = str(response.json().get("code"))
    return Answer(
        what,
        response.status_code,
        began,
        time.monotonic() - began,
        response.headers.get("Retry-After"),
        code,
    )


def _broker_on_redis(stack: FaultStack) -> bool:
    """Whether the stack's broker is a database of the Redis that goes down."""
    return stack.env["CONDUIT_BROKER_URL"].rsplit("/", 1)[0] == stack.redis.url.rsplit("/", 1)[0]


def _app_and_console(stack: FaultStack) -> tuple[ServiceKey, str]:
    """A chat app with its Service API key, and its owner's console token."""
    admin = login(stack, *create_admin(stack))  # type: ignore[arg-type]
    try:
        found = service_app(stack, admin, pre_prompt="You are a test assistant.")  # type: ignore[arg-type]
        found.client.close()
        return ServiceKey(found.app_id, found.key), admin.token
    finally:
        admin.client.close()


@dataclass
class ReadyProbe:
    server: int
    sent: float  # time.monotonic() when it was sent
    answered: float
    status: int
    message: str


class Readiness:
    """/ready of both servers asked every 0.1 s, each question on a thread of its own, so that
    when one is answered late (this test's own process is busy) the next ones are still sent on
    time: what counts is when a question that got 200 was asked."""

    def __init__(self, stack: FaultStack) -> None:
        self.stack = stack
        self.probes: list[ReadyProbe] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._ask_often, daemon=True)
        self._asking: list[threading.Thread] = []

    def start(self) -> Readiness:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for asking in self._asking:
            asking.join(15)

    def ready_after(self, *, since: float) -> float:
        """Seconds from `since` to the first question that both servers answered 200 from."""
        first_ok = [
            min(
                (
                    p.sent
                    for p in self.probes
                    if p.server == s and p.sent >= since and p.status == 200
                ),
                default=float("inf"),
            )
            for s in (0, 1)
        ]
        return max(first_ok) - since

    def _ask_often(self) -> None:
        while not self._stop.is_set():
            for server in (0, 1):
                asking = threading.Thread(target=self._ask, args=(server,), daemon=True)
                asking.start()
                self._asking.append(asking)
            self._stop.wait(0.1)

    def _ask(self, server: int) -> None:
        sent = time.monotonic()
        try:
            response = httpx.get(f"{self.stack.url(server)}/ready", timeout=10)
        except httpx.HTTPError as error:
            self.probes.append(ReadyProbe(server, sent, time.monotonic(), 0, repr(error)))
            return
        self.probes.append(
            ReadyProbe(server, sent, time.monotonic(), response.status_code, response.text[:300])
        )


def test_redis_stopped_20_s_then_restarted_empty(stack: FaultStack, tmp_path: Path) -> None:
    app, console_token = _app_and_console(stack)
    load = Load(stack, app, console_token).start()
    try:
        time.sleep(3.0)  # runs in flight, some half streamed
        in_flight = sum(1 for client in load.clients if client.first_event.is_set())
        stack.redis.stop()
        down_at = time.monotonic()
        readiness = Readiness(stack).start()
        time.sleep(OUTAGE)
        outage_answers = len(load.answers)
        restart_at = time.monotonic()
        stack.redis.start()  # returns once it answers (its start takes a moment)
        back_at = time.monotonic()

        # The first run started after the return succeeds (it streams to its end, below).
        first = Client(stack, app, user="first-after", server=0).start()
        deadline = time.monotonic() + READY_AFTER + 0.5
        while time.monotonic() < deadline and readiness.ready_after(since=back_at) > 1e9:
            time.sleep(0.1)
        time.sleep(0.5)
        readiness.stop()
        first.join(60)
        time.sleep(2.0)  # the load goes on after the return
    finally:
        load.stop()

    for client in load.clients:
        client.join(120)
    settled = wait_none_running(stack, timeout=60)
    clients = [*load.clients, first]
    found = audit(stack, app, clients)
    ready_after = max(0.0, readiness.ready_after(since=restart_at) - (back_at - restart_at))
    report(
        Row(
            f"Redis stopped {OUTAGE:.0f} s, restarted empty ({stack.executor}"
            + (", the broker on it)" if _broker_on_redis(stack) else ")"),
            in_flight,
            found.lost,
            found.duplicated,
            found.stuck,
            round(ready_after, 1),
            f"{found.accepted} runs accepted, {len(load.answers)} probes, settled {settled:.1f} s",
        )
    )

    # During the outage /ready said which dependency failed; after it, it was soon 200.
    during = [p for p in readiness.probes if down_at + 0.5 < p.sent and p.answered < restart_at]
    unready = [p for p in during if not (p.status == 503 and "redis" in p.message)]
    assert during and not unready, [(round(p.sent - back_at, 2), p.status) for p in unready]
    assert ready_after <= READY_AFTER, (ready_after, readiness.probes[-12:])

    # Every answer: a success, or a 503 with Retry-After; never a 500. Never slow either,
    # but for a blocking run's success (it takes its answer's time, 4 s) or its 503 when it was
    # under way as Redis went (answered at once then).
    problems = [
        answer
        for answer in load.answers
        if not (answer.status in (200, 201) or (answer.status == 503 and answer.retry_after))
        or (
            answer.seconds > SLOW
            and not (answer.what == "blocking run" and answer.status == 200)
            and not (answer.what == "blocking run" and answer.began < down_at)
        )
    ]
    assert not problems, (
        [(round(a.began - down_at, 2), round(a.began - back_at, 2), a) for a in problems[:10]],
        stack.error_lines()[-20:],
    )
    refused_starts = [c for c in load.clients if c.status is not None and c.status != 200]
    assert all(c.status == 503 for c in refused_starts), [c.error for c in refused_starts][:5]
    assert all("redis_unavailable" in str(c.error) for c in refused_starts)
    # Requests that need no Redis kept working during the outage.
    probed_during = load.answers[: outage_answers or None]
    for what in ("parameters", "console app"):
        assert all(a.status == 200 for a in probed_during if a.what == what), what
    # Runs were refused during the outage (503), and accepted again after it.
    assert refused_starts, "no run start was refused while Redis was down"
    assert first.status == 200 and first.ended and first.frames[-1].event == "message_end"

    found.assert_clean()
    assert in_flight > 0
