"""The Celery broker stopped and restarted under work: Redis (restarted empty, as a Redis without
persistence does) and RabbitMQ (a node of our own, restarted with its durable queues).

Each broker gets two scenarios, on one stack whose worker must live through both:

- runs in flight with spare worker capacity (the consumer is waiting in BRPOP when the broker
  goes, which used to kill the worker: `conduit/tasks/_redis_transport.py`), and runs accepted
  while the broker is down (their outbox rows wait in the database);
- the worker saturated and runs queued in the broker when it goes: a Redis broker comes back
  without them, so the outbox sends them again (`conduit/tasks/broker_loss.py`); RabbitMQ
  keeps them.

Asserted: 0 accepted runs lost, 0 events duplicated, 0 runs left `running`, every stream equal
to its stored answer, the model called once per run, the worker alive, and the work resumed
within 5 s of the broker's return (measured from its return to the first event of every run
that waited for it, and printed as a row of `bench/faults.py`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Protocol

import httpx
import pytest

from tests import support
from tests.faults.harness import (
    Client,
    FaultStack,
    Row,
    ServiceKey,
    audit,
    chat_app,
    fault_stack,
    report,
)

OUTAGE = 5.0  # longer than a run (4 s): the runs in flight end while the broker is away
RESUME_WITHIN = 5.0


class Broker(Protocol):
    def start(self) -> Any: ...
    def stop(self) -> None: ...


# --- stacks ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.PrivateRedis]:
    """The broker's own Redis: stopping it leaves the cache and event logs (another Redis) up."""
    server = support.PrivateRedis(tmp_path_factory.mktemp("broker-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_broker_stack(
    tmp_path_factory: pytest.TempPathFactory, slow_upstream: Any, broker_redis: support.PrivateRedis
) -> Iterator[FaultStack]:
    with fault_stack(
        tmp_path_factory.mktemp("redis-broker"), slow_upstream.base_url, broker_url=broker_redis.url
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def rabbitmq_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.PrivateRabbitMQ]:
    if not support.PrivateRabbitMQ.available():
        support.missing("rabbitmq-server (a node of this test's own)")
    node = support.PrivateRabbitMQ(tmp_path_factory.mktemp("rabbitmq"))
    took = node.start()
    print(f"\nprivate RabbitMQ node {node.node} accepted connections after {took:.1f} s")
    yield node
    node.stop()


@pytest.fixture(scope="module")
def rabbitmq_stack(
    tmp_path_factory: pytest.TempPathFactory,
    slow_upstream: Any,
    rabbitmq_node: support.PrivateRabbitMQ,
) -> Iterator[FaultStack]:
    with fault_stack(
        tmp_path_factory.mktemp("rabbitmq-broker"),
        slow_upstream.base_url,
        broker_url=rabbitmq_node.url,
    ) as stack:
        yield stack


# --- helpers ---------------------------------------------------------------------------------


def _all_ready(stack: FaultStack, timeout: float = 20.0) -> None:
    """Both servers' `/ready` answer 200: the broker answers and a worker consumes."""

    def ready() -> bool:
        return all(
            httpx.get(f"{stack.url(index)}/ready", timeout=5).status_code == 200
            for index in range(len(stack.servers))
        )

    support.wait_for(ready, timeout=timeout, interval=0.2, what="every server ready")


def _clients(stack: FaultStack, app: ServiceKey, label: str, count: int) -> list[Client]:
    return [
        Client(stack, app, user=f"{label}-{index}", query=f"{label} {index}", server=index % 2)
        for index in range(count)
    ]


def _accepted(clients: list[Client], timeout: float = 20.0) -> None:
    support.wait_for(
        lambda: all(client.task_id for client in clients),
        timeout=timeout,
        what="the runs to be accepted",
    )


def _streaming(clients: list[Client]) -> list[Client]:
    for client in clients:
        client.start()
    for client in clients:
        assert client.first_event.wait(20), client.error
    return clients


def _dispatched_runs(stack: FaultStack) -> int:
    rows = stack.sql(
        "SELECT count(*) FROM outbox WHERE task = 'conduit.generation.run' AND status = 'dispatched'"
    )
    return int(str(rows[0][0]))


def _naming_done(stack: FaultStack) -> None:
    """The conversations' naming tasks (which start with each run) are done."""
    support.wait_for(
        lambda: (
            not stack.sql(
                "SELECT 1 FROM outbox WHERE task = 'conduit.generation.name_conversation' "
                "AND status <> 'succeeded' LIMIT 1"
            )
        ),
        timeout=10,
        what="the naming tasks to end",
    )


def _resumed_after(clients: list[Client], back: float, timeout: float = 30.0) -> float:
    """Seconds from the broker's return until every one of `clients` had its first event."""
    support.wait_for(
        lambda: all(client.first_event.is_set() for client in clients),
        timeout=timeout,
        interval=0.02,
        what="the waiting runs to start",
    )
    return time.monotonic() - back


def _model_calls(upstream: Any, clients: list[Client]) -> dict[str, int]:
    """How many streamed model calls each client's question got (naming calls do not stream)."""
    calls = {client.query: 0 for client in clients}
    for request in upstream.stats()["log"]:
        if not request["stream"]:
            continue
        asked = [m.get("content") for m in request["messages"] if m.get("role") == "user"]
        if asked and asked[-1] in calls:
            calls[str(asked[-1])] += 1
    return calls


def _finish(
    stack: FaultStack,
    app: ServiceKey,
    clients: list[Client],
    upstream: Any,
    *,
    fault: str,
    in_flight: int,
    resumed: float,
    note: str,
) -> None:
    for client in clients:
        client.join(120)
    found = audit(stack, app, clients)
    report(
        Row(fault, in_flight, found.lost, found.duplicated, found.stuck, round(resumed, 1), note)
    )
    found.assert_clean()
    assert found.accepted == len(clients)
    assert all(client.frames[-1].event == "message_end" for client in clients), [
        (client.task_id, client.frames[-1].event if client.frames else None) for client in clients
    ]
    calls = _model_calls(upstream, clients)
    assert set(calls.values()) == {1}, f"model calls per run: {calls}"
    assert stack.worker.alive, "the worker exited:\n" + stack.worker.log()[-3000:]
    assert resumed <= RESUME_WITHIN, f"work resumed {resumed:.1f} s after the broker's return"


def _outage_with_runs_in_flight(
    stack: FaultStack, broker: Broker, upstream: Any, *, fault: str
) -> None:
    app = chat_app(stack)
    _all_ready(stack)
    upstream.reset()
    in_flight = _streaming(_clients(stack, app, "flight", 2))
    # Two of the worker's four threads busy, two free: its consumer is waiting on the broker
    # (in BRPOP on Redis) when the broker goes, the case that used to end the worker.
    _naming_done(stack)
    broker.stop()
    stopped = time.monotonic()
    waiting = _clients(stack, app, "during", 2)
    for client in waiting:
        client.start()
    _accepted(waiting)  # accepted while the broker is down: outbox rows
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped)))
    broker.start()
    back = time.monotonic()
    resumed = _resumed_after(waiting, back)
    _finish(
        stack,
        app,
        in_flight + waiting,
        upstream,
        fault=fault,
        in_flight=len(in_flight),
        resumed=resumed,
        note=f"{len(waiting)} runs accepted during the {OUTAGE:.0f} s outage",
    )
    _all_ready(stack)


def _outage_with_runs_queued(
    stack: FaultStack, broker: Broker, upstream: Any, *, fault: str, note: str
) -> None:
    app = chat_app(stack)
    _all_ready(stack)
    upstream.reset()
    in_flight = _streaming(_clients(stack, app, "busy", 4))  # every worker thread
    queued = _clients(stack, app, "queued", 3)
    for client in queued:
        client.start()
    _accepted(queued)
    support.wait_for(
        lambda: _dispatched_runs(stack) >= len(queued),
        timeout=10,
        what="the runs to wait in the broker",
    )
    broker.stop()
    stopped = time.monotonic()
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped)))
    broker.start()
    back = time.monotonic()
    resumed = _resumed_after(queued, back)
    _finish(
        stack,
        app,
        in_flight + queued,
        upstream,
        fault=fault,
        in_flight=len(in_flight) + len(queued),
        resumed=resumed,
        note=note,
    )
    _all_ready(stack)


# --- Redis -----------------------------------------------------------------------------------


class TestRedisBroker:
    def test_worker_survives_with_runs_in_flight_and_resumes(
        self,
        redis_broker_stack: FaultStack,
        broker_redis: support.PrivateRedis,
        slow_upstream: Any,
    ) -> None:
        _outage_with_runs_in_flight(
            redis_broker_stack,
            broker_redis,
            slow_upstream,
            fault=f"Redis broker down {OUTAGE:.0f} s, runs in flight",
        )

    def test_runs_queued_in_a_broker_restarted_empty_are_sent_again(
        self,
        redis_broker_stack: FaultStack,
        broker_redis: support.PrivateRedis,
        slow_upstream: Any,
    ) -> None:
        _outage_with_runs_queued(
            redis_broker_stack,
            broker_redis,
            slow_upstream,
            fault=f"Redis broker down {OUTAGE:.0f} s, restarted empty, runs queued",
            note="queued runs lost by the broker, sent again by the outbox",
        )


# --- RabbitMQ --------------------------------------------------------------------------------


class TestRabbitMQBroker:
    def test_worker_survives_with_runs_in_flight_and_resumes(
        self,
        rabbitmq_stack: FaultStack,
        rabbitmq_node: support.PrivateRabbitMQ,
        slow_upstream: Any,
    ) -> None:
        _outage_with_runs_in_flight(
            rabbitmq_stack,
            rabbitmq_node,
            slow_upstream,
            fault=f"RabbitMQ broker down {OUTAGE:.0f} s, runs in flight",
        )

    def test_runs_queued_in_the_broker_survive_its_restart(
        self,
        rabbitmq_stack: FaultStack,
        rabbitmq_node: support.PrivateRabbitMQ,
        slow_upstream: Any,
    ) -> None:
        _outage_with_runs_queued(
            rabbitmq_stack,
            rabbitmq_node,
            slow_upstream,
            fault=f"RabbitMQ broker restarted ({OUTAGE:.0f} s), runs queued",
            note="durable queues, persistent messages: kept by the broker",
        )
