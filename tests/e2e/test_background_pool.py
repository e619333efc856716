"""`conduit worker` (no -Q) runs the `background` queue — model calls off a run's path, i.e.
conversation naming — in a supervised child pool of its own, so that they never take a
generation worker from a run; the child is started again when it dies."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests import support
from tests.conftest import DISTRIBUTED
from tests.e2e.conftest import ServiceApp

pytestmark = pytest.mark.skipif(not DISTRIBUTED, reason="conduit worker: the distributed mode")

EXECUTOR = "celery"


def _naming_processes(log: str) -> set[int]:
    """The processes that logged a conversation's naming."""
    found: set[int] = set()
    for line in log.splitlines():
        if '"conversation ' in line and " named " in line:
            found.add(int(json.loads(line)["process"]))
    return found


def _children(pid: int) -> list[int]:
    """The child processes of `pid`, whichever of its threads started them."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _named(app: ServiceApp, conversation_id: str) -> bool:
    response = app.client.get("/conversations", params={"user": "alice", "limit": 20})
    data: list[dict[str, Any]] = response.json()["data"]
    return any(c["id"] == conversation_id and c["name"] != "New conversation" for c in data)


def _chat(app: ServiceApp) -> str:
    response = app.client.post(
        "/chat-messages",
        json={"inputs": {}, "query": "Name me", "user": "alice", "response_mode": "blocking"},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["conversation_id"])


def test_naming_runs_in_the_background_pool_which_is_restarted_when_it_dies(
    chat_app: ServiceApp,
) -> None:
    worker = chat_app.stack.worker
    assert worker is not None and worker.process is not None
    main_pid = worker.process.pid
    children = support.wait_for(lambda: _children(main_pid), what="the background pool")
    assert len(children) == 1
    conversation = _chat(chat_app)
    support.wait_for(lambda: _named(chat_app, conversation), timeout=20, what="the name")
    support.wait_for(lambda: _naming_processes(worker.log()), timeout=10, what="the naming logged")
    assert _naming_processes(worker.log()) == {children[0]}  # not the generation pool

    os.kill(children[0], signal.SIGKILL)
    restarted = support.wait_for(
        lambda: [pid for pid in _children(main_pid) if pid != children[0]],
        timeout=20,
        what="the background pool started again",
    )
    again = _chat(chat_app)
    support.wait_for(lambda: _named(chat_app, again), timeout=30, what="a name after the restart")
    # The task logs its naming after the name is committed (and its model clients closed).
    support.wait_for(
        lambda: restarted[0] in _naming_processes(worker.log()),
        timeout=10,
        what="the restarted pool's naming in the worker's log",
    )


def test_the_background_pool_stops_when_its_worker_is_killed(chat_app: ServiceApp) -> None:
    """kill -9 of a `conduit worker` (only its own process, as an orchestrator or a script
    killing one pid does) leaves no background pool behind consuming its queue."""
    stack = chat_app.stack
    worker = support.Process(
        ["worker", "-c", "1"], env=stack.env, cwd=stack.workdir, log=stack.workdir / "w2.log"
    )
    worker.start()
    assert worker.process is not None
    pid = worker.process.pid
    try:
        child = support.wait_for(lambda: _children(pid), what="the pool")[0]
        os.kill(pid, signal.SIGKILL)
        worker.process.wait(10)
        support.wait_for(
            lambda: (
                not Path(f"/proc/{child}").exists()
                or "Z" in Path(f"/proc/{child}/stat").read_text().split(")")[1][:3]
            ),
            timeout=30,
            what="the orphaned background pool to stop",
        )
    finally:
        worker.kill()
