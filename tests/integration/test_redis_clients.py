"""The asyncio Redis client on uvloop (the server's loop) when Redis drops connections as it
shuts down: every failure is Redis's `ConnectionError` (503 at the API), never uvloop's
`RuntimeError` ("the handler is closed"), which reached the API as a 500 in the Redis outage
fault test before `_Connection` translated it."""

from __future__ import annotations

import collections
import socket
import struct
import threading
from collections.abc import Iterator

import pytest
import uvloop
from redis.exceptions import ConnectionError as RedisConnectionError

from conduit.infra.redis import build_async_redis

ATTEMPTS = 300


@pytest.fixture
def resetting_listener() -> Iterator[int]:
    """A port whose every connection is accepted, then reset at once (what a Redis going down
    does to connections it was handed): the client's connect succeeds and its first write
    races the reset."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.close()

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


def test_a_connection_reset_on_uvloop_is_a_connection_error(resetting_listener: int) -> None:
    async def scenario() -> collections.Counter[str]:
        seen: collections.Counter[str] = collections.Counter()
        for _ in range(ATTEMPTS):
            client = build_async_redis(f"redis://127.0.0.1:{resetting_listener}")
            try:
                await client.ping()
                seen["answered"] += 1
            except RedisConnectionError:
                seen["ConnectionError"] += 1
            except Exception as other:  # what must not happen: counted, to show which
                seen[type(other).__name__] += 1
            finally:
                await client.aclose()
        return seen

    seen = uvloop.run(scenario())
    assert seen == {"ConnectionError": ATTEMPTS}, seen
