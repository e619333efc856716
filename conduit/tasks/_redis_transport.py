"""kombu's Redis transport, with a channel that closes cleanly when the broker has gone away.

Why (kombu 5.7.0, the newest release; seen as issue 20, item 3): when a worker loses its Redis
broker while it holds unacknowledged tasks, Celery's consumer first `collect()`s the connection:
closing the consuming channel starts by reading its pending BRPOP reply, which raises a
connection error on the dead socket *before* the channel is marked closed, and `collect()` then
releases the transport (`transport.client = None`). The consumer's next `connection.close()`
closes the same channel again: this time it goes on to restore the unacknowledged messages,
needs the released transport's client to build a Redis pool, and fails with
`AttributeError: 'NoneType' object has no attribute 'hostname'` — not a connection error, so
Celery calls it unrecoverable and the worker process exits.

Two small changes keep it a connection error, which Celery survives by reconnecting:

- `close()` treats a connection error while reading the pending BRPOP reply as "no reply":
  the rest of the close runs at once (the restore of unacked messages then fails as a
  connection error while the broker is down, or succeeds if it is back), and the channel is
  marked closed, so the second close is a no-op.
- `_connparams()` raises a connection error, not an AttributeError, when the channel's
  transport is already released (a late ack of a task that finished after the reconnect, a
  restore at garbage collection).

Selected by `conduit.tasks.celery_app.create_celery` for redis:// and rediss:// brokers.
"""

from __future__ import annotations

from queue import Empty
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from redis import exceptions as redis_errors


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    def close(self) -> None:
        if self._in_poll:
            try:
                self._brpop_read()
            except Empty:
                pass
            except self.connection_errors:
                pass  # the broker is gone: there is no reply left to read
        super().close()

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        transport = self.connection
        if transport is None or transport.client is None:
            raise redis_errors.ConnectionError("the broker connection of this channel is closed")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)
        return params


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel


# The name Celery selects it by (`broker_transport`) and shows in its log lines.
TRANSPORT = "conduit-redis"
TRANSPORT_ALIASES[TRANSPORT] = f"{__name__}:Transport"
