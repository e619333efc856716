"""Noticing that a Redis broker lost the tasks it held, and which ones (the outbox relay's
`BrokerWatch`, `conduit.infra.outbox`).

A Redis broker restarted without persistence comes back empty: every task that waited in a
queue is gone, and the outbox rows say `dispatched` until the visibility timeout's sweep
(an hour). The relay asks this watch every sweep (one INFO and one GET):

- `lost_messages()`: the server's `run_id` changed (it restarted, perhaps with its data), or
  the epoch key this watch's kind writes (`conduit:broker-epoch`, no expiry) is missing or was
  replaced (the data is gone: an empty restart, a flush, a failover to an empty replica);
- `holds(tasks)`: which of the dispatched, never started tasks are still in the broker, in
  their queue's list or in kombu's `unacked` hash (delivered to a worker, not acknowledged),
  so that only the lost ones are sent again (a restart that kept its data sends nothing twice).

RabbitMQ needs none of this: its queues are durable and its messages persistent.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import redis

EPOCH_KEY = "conduit:broker-epoch"
# kombu's Redis transport keeps delivered, unacknowledged messages in this hash.
UNACKED_KEY = "unacked"
PAGE = 1000


class RedisBrokerWatch:
    """The `BrokerWatch` of a Redis broker (one per relay: it remembers what it last saw)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._seen: tuple[str, str] | None = None  # (run_id, epoch) at the last look

    def lost_messages(self) -> bool:
        run_id = str(self._client.info("server").get("run_id", ""))
        epoch = self._client.get(EPOCH_KEY)
        emptied = epoch is None
        if emptied:
            self._client.set(EPOCH_KEY, uuid.uuid4().hex, nx=True)
            epoch = self._client.get(EPOCH_KEY)
        seen, self._seen = self._seen, (run_id, str(epoch))
        return emptied or (seen is not None and seen != self._seen)

    def holds(self, tasks: Sequence[tuple[str, str]]) -> set[str]:
        wanted = {task_id for task_id, _ in tasks}
        found: set[str] = set()
        for queue in sorted({queue for _, queue in tasks}):
            found.update(task_id for task_id in self._queued(queue) if task_id in wanted)
        for _, raw in self._client.hscan_iter(UNACKED_KEY, count=PAGE):
            task_id = _task_id(_first(raw))
            if task_id in wanted:
                found.add(task_id)
        return found

    def _queued(self, queue: str) -> Iterator[str | None]:
        # Paged, so a long backlog is not read in one reply (a message moved by a worker
        # between two pages may be missed: it is then sent twice, which tasks tolerate).
        start = 0
        while True:
            page = self._client.lrange(queue, start, start + PAGE - 1)
            for raw in page:
                yield _task_id(_loads(raw))
            if len(page) < PAGE:
                return
            start += PAGE


def _loads(raw: Any) -> Any:
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return None


def _first(raw: Any) -> Any:
    """An `unacked` entry is `[message, exchange, routing key]`."""
    entry = _loads(raw)
    return entry[0] if isinstance(entry, list) and entry else None


def _task_id(message: Any) -> str | None:
    if not isinstance(message, dict):
        return None
    headers = message.get("headers")
    task_id = headers.get("id") if isinstance(headers, dict) else None
    return str(task_id) if task_id else None
