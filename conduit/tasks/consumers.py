"""Which queues have a live consumer: workers say so, a server's `/ready` asks.

A Redis broker cannot tell who consumes a queue (workers just BRPOP), so while a worker's
consumer is connected, `QueueHeartbeat` (a bootstep of Celery's consumer) sets one key per
queue it consumes in the broker's Redis, `conduit:consumed:<queue>`, expiring after
`HEARTBEAT_TTL` seconds, and refreshes it every `HEARTBEAT_SECONDS`; the step starts after each
(re)connection and stops when the connection is lost, so the keys lapse when no worker can
take work. A server reads them in one MGET per probe. RabbitMQ knows its consumers: the server
asks it (a passive queue declare answers the consumer count). Neither is a Celery broadcast.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence
from typing import Any

import redis
from celery import Celery, bootsteps

from conduit.infra.redis import build_redis

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
# Three missed heartbeats: a worker that lost its broker or died stops counting within 6 s.
HEARTBEAT_TTL = 6
KEY_PREFIX = "conduit:consumed:"


def is_redis_url(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("redis://", "rediss://"))


def consumed_key(queue: str) -> str:
    return f"{KEY_PREFIX}{queue}"


class NoConsumer(RuntimeError):
    """A queue a server publishes to has no live consumer."""

    def __init__(self, queues: Sequence[str]) -> None:
        self.queues = list(queues)
        super().__init__("no live worker consumes the queue(s): " + ", ".join(self.queues))


class QueueHeartbeat(bootsteps.StartStopStep):  # type: ignore[misc]
    """While connected to a Redis broker, keep `conduit:consumed:<queue>` alive for each queue
    this worker consumes."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self._entry: Any = None
        self._client: redis.Redis | None = None

    def include_if(self, c: Any) -> bool:
        return is_redis_url(c.app.conf.broker_url)

    def start(self, c: Any) -> None:
        queues = sorted(queue.name for queue in c.task_consumer.queues)
        if self._client is None:
            self._client = build_redis(c.app.conf.broker_url, socket_timeout=1.0)
        beat = (self._client, queues, str(getattr(c, "hostname", None) or socket.gethostname()))
        self._beat(*beat)  # at once: a server may be waiting for its first consumer
        self._entry = c.timer.call_repeatedly(HEARTBEAT_SECONDS, self._beat, beat)

    def stop(self, c: Any) -> None:
        # The keys are left to expire: another worker may consume the same queues.
        if self._entry is not None:
            self._entry.cancel()
            self._entry = None

    def shutdown(self, c: Any) -> None:
        self.stop(c)
        if self._client is not None:
            self._client.close()
            self._client = None

    @staticmethod
    def _beat(client: redis.Redis, queues: list[str], worker: str) -> None:
        try:
            with client.pipeline(transaction=False) as pipe:
                for queue in queues:
                    pipe.set(consumed_key(queue), worker, ex=HEARTBEAT_TTL)
                pipe.execute()
        except redis.RedisError as error:
            # The consumer notices a lost broker itself (and stops this step); a beat that
            # fails in between only lets the keys run down a little.
            logger.debug("queue heartbeat failed: %s", error)


def redis_consumer_check(broker_url: str, queues: Sequence[str]) -> Callable[[], None]:
    """A readiness check: raises `NoConsumer` naming each queue no worker has beaten for."""
    client = build_redis(broker_url, socket_timeout=2.0)
    names = list(queues)

    def check() -> None:
        beats = client.mget([consumed_key(queue) for queue in names])
        missing = [queue for queue, beat in zip(names, beats, strict=True) if beat is None]
        if missing:
            raise NoConsumer(missing)

    return check


def amqp_consumer_check(celery: Celery, queues: Sequence[str]) -> Callable[[], None]:
    """A readiness check: asks RabbitMQ how many consumers each queue has (passive declare);
    raises `NoConsumer` naming those with none, or never declared."""
    names = list(queues)

    def check() -> None:
        missing: list[str] = []
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
            channel = connection.channel()
            try:
                for queue in names:
                    try:
                        _, _, consumers = channel.queue_declare(queue=queue, passive=True)
                    except connection.channel_errors:
                        # NOT_FOUND closes the channel: no worker ever declared this queue.
                        missing.append(queue)
                        channel = connection.channel()
                        continue
                    if not consumers:
                        missing.append(queue)
            finally:
                channel.close()
        if missing:
            raise NoConsumer(missing)

    return check
