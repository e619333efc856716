"""kill -9 of the worker running a workflow (the celery executor, RabbitMQ as the broker, in a
vhost of its own): RabbitMQ hands the run's unacknowledged delivery to the restarted worker,
which claims it once the dead worker's lease lapsed and resumes from the nodes the run had
ended (stored with its checkpoints): they are not run again, the rest is. In flight: 3 runs,
each past its first node and inside a 4 s code node. Nothing lost, nothing run twice, nothing
left `running`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import support
from tests.e2e.conftest import create_admin, login
from tests.e2e.test_async_runs import poll
from tests.e2e.test_workflow_runs import workflow_app
from tests.faults.harness import (
    FaultStack,
    Row,
    fault_stack,
    long_answer,
    report,
    wait_none_running,
)

IN_FLIGHT = 3


@pytest.fixture(scope="module")
def rabbit_stack(
    tmp_path_factory: pytest.TempPathFactory, slow_upstream: Any
) -> Iterator[FaultStack]:
    support.need_rabbitmq()
    with (
        support.rabbitmq_vhost() as broker,
        fault_stack(
            tmp_path_factory.mktemp("workflow-rabbit"),
            slow_upstream.base_url,
            broker_url=broker,
            servers=1,
        ) as stack,
    ):
        yield stack


def test_kill_9_of_the_worker_mid_workflow_resumes_from_the_ended_nodes(
    rabbit_stack: FaultStack, tmp_path: Path
) -> None:
    admin = login(rabbit_stack, *create_admin(rabbit_stack))  # type: ignore[arg-type]
    app = workflow_app(rabbit_stack, admin, "resumable.yml")  # type: ignore[arg-type]
    tasks = []
    for index in range(IN_FLIGHT):
        accepted = app.client.post(
            "/workflows/run",
            json={"inputs": {"word": f"w{index}"}, "user": "resume", "response_mode": "async"},
        )
        assert accepted.status_code == 202, accepted.text
        tasks.append(accepted.json())

    def firsts_stored() -> bool:
        rows = rabbit_stack.sql(
            "SELECT count(*) FROM workflow_node_executions WHERE node_id = 'first'"
        )
        return rows[0][0] == IN_FLIGHT

    support.wait_for(firsts_stored, timeout=30, what="the first nodes' checkpoints")
    rabbit_stack.worker.kill()  # inside the 4 s code node of every run
    killed = time.monotonic()
    rabbit_stack.worker.start()
    ended = [poll(app.client, task["status_url"], until=60) for task in tasks]
    took = time.monotonic() - killed
    assert [task["status"] for task in ended] == ["succeeded"] * IN_FLIGHT, ended
    outputs = sorted(task["result"]["data"]["outputs"]["result"] for task in ended)
    assert outputs == [f"<w{index}> then slow" for index in range(IN_FLIGHT)]
    # The first node ran once per run (resumed, not run again); the code node once to its end.
    counts = dict(
        rabbit_stack.sql(
            "SELECT node_id, count(*) FROM workflow_node_executions "
            "WHERE status = 'succeeded' GROUP BY node_id"
        )
    )
    assert counts == {"start": IN_FLIGHT, "first": IN_FLIGHT, "slow": IN_FLIGHT, "end": IN_FLIGHT}
    stuck = rabbit_stack.sql("SELECT count(*) FROM workflow_runs WHERE status = 'running'")[0][0]
    assert stuck == 0
    wait_none_running(rabbit_stack, timeout=10)
    report(
        Row(
            "kill -9 worker mid-workflow (RabbitMQ)",
            IN_FLIGHT,
            0,
            0,
            stuck,
            round(took, 1),
            "redelivered; resumed from the stored nodes, none run twice",
        )
    )
    app.client.close()
    admin.client.close()


def test_kill_9_of_the_worker_mid_agent_node_runs_it_again_once(
    rabbit_stack: FaultStack,
) -> None:
    """In flight: 3 runs past their tool node, each inside an agent node whose second round
    streams a 4 s answer. The resumed runs keep the tool node (not run again) and run the
    agent node again from its start, to one answer each."""
    admin = login(rabbit_stack, *create_admin(rabbit_stack))  # type: ignore[arg-type]
    app = workflow_app(rabbit_stack, admin, "agent_slow.yml")  # type: ignore[arg-type]
    tasks = []
    for index in range(IN_FLIGHT):
        accepted = app.client.post(
            "/workflows/run",
            json={"inputs": {"a": index + 1}, "user": "agent", "response_mode": "async"},
        )
        assert accepted.status_code == 202, accepted.text
        tasks.append(accepted.json())

    def sums_stored() -> bool:
        rows = rabbit_stack.sql(
            "SELECT count(*) FROM workflow_node_executions WHERE node_id = 'sum' AND app_id = :app",
            app=app.app_id,
        )
        return rows[0][0] == IN_FLIGHT

    support.wait_for(sums_stored, timeout=30, what="the tool nodes' checkpoints")
    running = rabbit_stack.sql(
        "SELECT count(*) FROM workflow_runs WHERE status = 'running' AND app_id = :app",
        app=app.app_id,
    )
    assert running[0][0] == IN_FLIGHT  # every agent still answering
    rabbit_stack.worker.kill()
    killed = time.monotonic()
    rabbit_stack.worker.start()
    ended = [poll(app.client, task["status_url"], until=60) for task in tasks]
    took = time.monotonic() - killed
    assert [task["status"] for task in ended] == ["succeeded"] * IN_FLIGHT, ended
    answers = [task["result"]["data"]["outputs"]["result"] for task in ended]
    assert answers == [f"Calling eval_expression.{long_answer()}"] * IN_FLIGHT
    # Each run's agent called the tool with its own tool node's answer (kept, not run again).
    observed = sorted(
        json.loads(
            (data if isinstance(data, dict) else json.loads(data))["rounds"][0]["observation"]
        )["eval_expression"]
        for (data,) in rabbit_stack.sql(
            "SELECT process_data FROM workflow_node_executions "
            "WHERE node_id = 'agent' AND status = 'succeeded' AND app_id = :app",
            app=app.app_id,
        )
    )
    assert observed == sorted(str((index + 1) ** 2 * 2) for index in range(IN_FLIGHT))
    counts = dict(
        rabbit_stack.sql(
            "SELECT node_id, count(*) FROM workflow_node_executions "
            "WHERE status = 'succeeded' AND app_id = :app GROUP BY node_id",
            app=app.app_id,
        )
    )
    assert counts == {"start": IN_FLIGHT, "sum": IN_FLIGHT, "agent": IN_FLIGHT, "end": IN_FLIGHT}
    stuck = rabbit_stack.sql("SELECT count(*) FROM workflow_runs WHERE status = 'running'")[0][0]
    assert stuck == 0
    wait_none_running(rabbit_stack, timeout=10)
    report(
        Row(
            "kill -9 worker mid agent node (RabbitMQ)",
            IN_FLIGHT,
            0,
            0,
            stuck,
            round(took, 1),
            "redelivered; the tool node kept, the agent node run again to one answer",
        )
    )
    app.client.close()
    admin.client.close()
