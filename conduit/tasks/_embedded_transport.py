"""kombu's in-memory transport, woken on publish instead of polled (embedded mode).

kombu's virtual transports sleep `polling_interval` between empty polls: 10 ms costs 10–14 ms of
start latency and ~2 % of a core idle (measured, `docs/decisions/0004-embedded-celery.md`). Here
the consumer waits on a condition that every publish notifies, so a task starts within a
fraction of a millisecond and an idle worker sleeps. Durability is not this transport's job: the
outbox table holds every task until it finished (`conduit.infra.outbox`).
"""

from __future__ import annotations

import threading
from queue import Empty
from time import monotonic
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, memory

_published = threading.Condition()
_generation = 0  # bumped on every publish; a waiter that saw an older value has work to look at
# An idle consumer still wakes this often, so that a stop request is noticed promptly.
_IDLE_WAKE = 1.0


def _notify() -> None:
    global _generation
    with _published:
        _generation += 1
        _published.notify_all()


class Channel(memory.Channel):  # type: ignore[misc]
    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        super()._put(queue, message, **kwargs)
        _notify()

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        # A pool thread finished a task: a consumer waiting for a free slot may take the next.
        super().basic_ack(delivery_tag, multiple)
        _notify()

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        super().basic_reject(delivery_tag, requeue)
        _notify()

    def _put_fanout(
        self, exchange: str, message: Any, routing_key: str | None = None, **kwargs: Any
    ) -> None:
        super()._put_fanout(exchange, message, routing_key, **kwargs)
        _notify()


class Transport(memory.Transport):  # type: ignore[misc]
    Channel = Channel
    driver_type = "memory"
    driver_name = "conduit-memory"
    global_state = memory.Transport.global_state

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:  # type: ignore[override]
        started = monotonic()
        while True:
            with _published:
                seen = _generation
            try:
                self.cycle.get(self._deliver, timeout=timeout)  # type: ignore[union-attr]
                return
            except Empty:
                pass
            remaining = _IDLE_WAKE
            if timeout is not None:
                remaining = min(remaining, timeout - (monotonic() - started))
                if remaining <= 0:
                    raise TimeoutError()
            with _published:
                if _generation == seen:
                    _published.wait(remaining)


TRANSPORT_ALIASES["conduit-memory"] = "conduit.tasks._embedded_transport:Transport"
