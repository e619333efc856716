"""A server's `/ready` wants a live consumer for each queue it sends work to
(`conduit.tasks.celery_app.SERVER_QUEUES`): that list must name exactly the queues of the
`enqueue(...)` calls in the code, or a queue nobody consumes would pass as ready."""

from __future__ import annotations

import re
from pathlib import Path

import conduit
from conduit.tasks.celery_app import QUEUES, SERVER_QUEUES

# An `enqueue(` call and its `queue="..."` argument, within the same call (no other call between).
_ENQUEUE = re.compile(r"\benqueue\((?:(?!\benqueue\().){0,400}?\bqueue=\"(\w+)\"", re.DOTALL)


def enqueued_queues() -> set[str]:
    found: set[str] = set()
    for path in Path(conduit.__file__).parent.rglob("*.py"):
        found.update(_ENQUEUE.findall(path.read_text(encoding="utf-8")))
    return found


def test_server_queues_are_the_queues_the_code_enqueues_to() -> None:
    assert enqueued_queues() == set(SERVER_QUEUES)


def test_server_queues_are_declared_queues() -> None:
    assert set(SERVER_QUEUES) <= set(QUEUES)
