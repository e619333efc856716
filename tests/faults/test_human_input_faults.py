"""Paused workflow runs under kill -9 (the celery executor, RabbitMQ as the broker, in a vhost of
its own). In flight: 3 async runs paused on a human-input form. Every server and the worker are
killed while they wait, then started again: the paused runs live in the database only, so the
answers (one per run) resume them. The worker is then killed inside the 3 s code node that
follows each answer: RabbitMQ hands the resumed executions to the restarted worker, which takes
them up from their stored nodes. Nothing lost (each run ends `succeeded` with its answer),
nothing run twice (the side branch, the form and the code node once each per run), nothing left
`running` or `paused`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests import support
from tests.e2e.conftest import create_admin, login
from tests.e2e.test_async_runs import poll
from tests.e2e.test_workflow_runs import workflow_app
from tests.faults.harness import FaultStack, Row, fault_stack, report

IN_FLIGHT = 3


@pytest.fixture(scope="module")
def rabbit_stack(
    tmp_path_factory: pytest.TempPathFactory, slow_upstream: Any
) -> Iterator[FaultStack]:
    support.need_rabbitmq()
    with (
        support.rabbitmq_vhost() as broker,
        fault_stack(
            tmp_path_factory.mktemp("human-input-rabbit"),
            slow_upstream.base_url,
            broker_url=broker,
            servers=2,
        ) as stack,
    ):
        yield stack


def test_paused_runs_outlive_kill_9_and_resume_once_after_another(
    rabbit_stack: FaultStack,
) -> None:
    stack = rabbit_stack
    admin = login(stack, *create_admin(stack))  # type: ignore[arg-type]
    app = workflow_app(stack, admin, "approval_slow.yml")  # type: ignore[arg-type]
    tasks = []
    for index in range(IN_FLIGHT):
        accepted = app.client.post(
            "/workflows/run",
            json={"inputs": {"word": f"w{index}"}, "user": "approver", "response_mode": "async"},
        )
        assert accepted.status_code == 202, accepted.text
        tasks.append(accepted.json())

    def statuses() -> list[str]:
        return [
            app.client.get(task["status_url"].removeprefix("/v1")).json()["status"]
            for task in tasks
        ]

    support.wait_for(lambda: statuses() == ["paused"] * IN_FLIGHT, timeout=60, what="the pauses")
    tokens = [str(row[0]) for row in stack.sql("SELECT token FROM human_input_forms")]
    assert len(tokens) == IN_FLIGHT

    # kill -9 of every process while the runs wait: they are rows, nothing else.
    for server in stack.servers:
        server.kill()
    stack.worker.kill()
    killed = time.monotonic()
    stack.start()
    for token in tokens:
        answered = app.client.post(
            f"/form/human_input/{token}",
            json={"inputs": {"note": "ok"}, "action": "approve", "user": "approver"},
        )
        assert answered.status_code == 200, answered.text

    def forms_taken_up() -> bool:
        rows = stack.sql(
            "SELECT count(*) FROM workflow_node_executions "
            "WHERE node_id = 'review' AND status = 'succeeded'"
        )
        return rows[0][0] == IN_FLIGHT

    support.wait_for(forms_taken_up, timeout=60, what="the resumed runs' checkpoints")
    stack.worker.kill()  # inside the 3 s code node of every resumed run
    stack.worker.start()
    ended = [poll(app.client, task["status_url"], until=90) for task in tasks]
    took = time.monotonic() - killed
    assert [task["status"] for task in ended] == ["succeeded"] * IN_FLIGHT, ended
    outputs = sorted(task["result"]["data"]["outputs"]["result"] for task in ended)
    assert outputs == [f"<w{index}> ok" for index in range(IN_FLIGHT)]
    counts = dict(
        stack.sql(
            "SELECT node_id, count(*) FROM workflow_node_executions "
            "WHERE status = 'succeeded' GROUP BY node_id"
        )
    )
    assert counts == {n: IN_FLIGHT for n in ("start", "side", "review", "slow", "end")}, counts
    left = stack.sql("SELECT count(*) FROM workflow_runs WHERE status IN ('running', 'paused')")[0][
        0
    ]
    paused_rows = stack.sql(
        "SELECT count(*) FROM workflow_node_executions WHERE status = 'paused'"
    )[0][0]
    assert left == 0 and paused_rows == 0
    unfinished = stack.sql(
        "SELECT count(*) FROM async_tasks WHERE status IN ('pending', 'running')"
    )[0][0]
    assert unfinished == 0
    report(
        Row(
            "kill -9 servers+worker while paused on forms, worker again mid-resume (RabbitMQ)",
            IN_FLIGHT,
            0,
            0,
            int(left),
            round(took, 1),
            "answers resumed each run once; the second kill resumed from the stored nodes",
        )
    )
    app.client.close()
    admin.client.close()
