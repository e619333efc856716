"""The Redis EventLog: one Redis Stream per run, so readers in any process can follow it.

Layout: stream `{prefix}{task_id}` with entries `{seq}-0` (fields `event`, `payload` as JSON)
and hash `{prefix}{task_id}:meta`. The runner is the only writer, so it numbers events itself:
it keeps the last seq per run in memory and reads the stream's top entry (XREVRANGE COUNT 1)
only when it does not know it (first append in this process, e.g. after a restart).

`close()` appends the sentinel `{last}-1` (event `__closed__`, never yielded): it sorts after
the last event without using up a seq number, so a reader from any `after` reaches it. Then
both keys expire after `retention`. Until then they expire `abandon_after` seconds past
`retention` (set at create and first append) so a run whose runner died does not live forever.
Nothing is trimmed: a stream holds its whole run (about 200 bytes per event).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from redis.typing import EncodableT

from conduit.core.runs.eventlog.base import RunNotFound, follow_by_reading
from conduit.core.runs.eventlog.memory import RunClosed
from conduit.core.runs.events import RunEvent

CLOSED_EVENT = "__closed__"
_CLOSED = CLOSED_EVENT.encode()
# A field every meta hash has, so that a run created without meta still exists; never returned.
_CREATED_FIELD = b"__created__"
_READ_COUNT = 500
# Runs whose last seq this writer remembers; a forgotten one costs one XREVRANGE, nothing more.
_MAX_REMEMBERED = 10_000
# Redis's answer when an explicit XADD id is not above the stream's top.
_ID_TOO_SMALL = "equal or smaller"

_Entry = tuple[bytes, dict[bytes, bytes]]


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _parse_id(entry_id: bytes) -> tuple[int, int]:
    seq, _, sub = entry_id.partition(b"-")
    return int(seq), int(sub or 0)


def _is_sentinel(fields: dict[bytes, bytes]) -> bool:
    return fields.get(b"event") == _CLOSED


def _closed_at_or_before(top: list[_Entry], cursor: tuple[int, int]) -> bool:
    # A sentinel at or before the cursor is one XREAD from the cursor will never return.
    return bool(top) and _is_sentinel(top[0][1]) and _parse_id(top[0][0]) <= cursor


def _block_below_socket_timeout(client: aioredis.Redis, block_ms: int) -> int:
    # A BLOCK as long as the socket timeout fails with TimeoutError instead of returning [].
    timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    if not timeout:
        return block_ms
    timeout_ms = float(timeout) * 1000
    return max(1, min(block_ms, int(timeout_ms - min(500.0, timeout_ms / 2))))


def _stream_entries(response: Any, key: str) -> list[_Entry]:
    # RESP2 answers [[key, entries]]; RESP3 answers {key: [entries]}.
    if not response:
        return []
    if isinstance(response, dict):
        found = response.get(key.encode()) or response.get(key) or [[]]
        return list(found[0])
    return list(response[0][1])


class RedisEventLog:
    """EventLog on Redis Streams; the backend owns `client` and closes it in `aclose()`."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "conduit:run:",
        retention: float = 600,
        block_ms: int = 5000,
        abandon_after: float = 24 * 3600,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._retention_ms = _ms(retention)
        self._open_ttl_ms = _ms(retention + abandon_after)
        self._block_ms = _block_below_socket_timeout(client, block_ms)
        self._last_seq: OrderedDict[str, int] = OrderedDict()

    def _stream(self, task_id: str) -> str:
        return f"{self._prefix}{task_id}"

    def _meta(self, task_id: str) -> str:
        return f"{self._prefix}{task_id}:meta"

    async def create(self, task_id: str, *, meta: dict[str, str] | None = None) -> None:
        """Open the run (idempotent: a second call merges `meta`); it expires if never closed."""
        fields: dict[EncodableT, EncodableT] = {_CREATED_FIELD: b"1"}
        fields.update(meta or {})
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(self._meta(task_id), mapping=fields)
            pipe.pexpire(self._meta(task_id), self._open_ttl_ms)
            pipe.pexpire(self._stream(task_id), self._open_ttl_ms)
            await pipe.execute()

    async def append(self, task_id: str, event: str, payload: dict[str, Any]) -> RunEvent:
        """XADD the next event; raises RunNotFound for an unknown run, RunClosed after close."""
        data = orjson.dumps(payload)
        fields: dict[EncodableT, EncodableT] = {"event": event, "payload": data}
        stream = self._stream(task_id)
        for _ in range(3):
            last = self._last_seq.pop(task_id, None)
            if last is None:
                last, closed = await self._read_top(task_id)
                if closed:
                    raise RunClosed()
            seq = last + 1
            try:
                if seq == 1:
                    # The stream is born here: give it the expiry create() could not.
                    async with self._redis.pipeline(transaction=False) as pipe:
                        pipe.xadd(stream, fields, id=f"{seq}-0")
                        pipe.pexpire(stream, self._open_ttl_ms)
                        await pipe.execute()
                else:
                    await self._redis.xadd(stream, fields, id=f"{seq}-0")
            except ResponseError as error:
                if _ID_TOO_SMALL not in str(error):
                    raise
                continue  # our remembered seq was stale (another writer, or a restart): re-read
            self._remember(task_id, seq)
            return RunEvent(task_id=task_id, seq=seq, event=event, data=data)
        raise RunClosed("Could not find the end of the run's log; is another writer appending?")

    async def close(self, task_id: str) -> None:
        """Append the sentinel and start the retention (idempotent; unknown runs are ignored)."""
        stream = self._stream(task_id)
        last = self._last_seq.pop(task_id, None)
        for _ in range(3):
            if last is None:
                try:
                    last, closed = await self._read_top(task_id)
                except RunNotFound:
                    return
                if closed:
                    return
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(stream, {"event": CLOSED_EVENT, "payload": b"{}"}, id=f"{last}-1")
                pipe.pexpire(stream, self._retention_ms)
                pipe.pexpire(self._meta(task_id), self._retention_ms)
                added, *_ = await pipe.execute(raise_on_error=False)
            if not isinstance(added, ResponseError):
                return
            if _ID_TOO_SMALL not in str(added):
                raise added
            last = None  # something landed after our last seq (a close, or a stale cache): look
        raise RunClosed("Could not find the end of the run's log; is another writer appending?")

    async def meta(self, task_id: str) -> dict[str, str] | None:
        """The metadata given to create(), or None for an unknown or expired run."""
        raw: dict[bytes, bytes] = await self._redis.hgetall(  # type: ignore[assignment]
            self._meta(task_id)
        )
        if not raw:
            return None
        return {k.decode(): v.decode() for k, v in raw.items() if k != _CREATED_FIELD}

    async def read(self, task_id: str, *, after: int, wait: float) -> list[RunEvent] | None:
        """Events with seq > `after` (XREAD, one batch); when none are there, XREAD BLOCK for
        up to `wait` s; [] when nothing came, None past the sentinel, or RunNotFound."""
        stream = self._stream(task_id)
        cursor = (max(after, 0), 0)
        # One round trip for the first look: what is there already, and whether the run exists
        # or is closed (needed only when nothing is there, but it rides along for free).
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xread({stream: f"{cursor[0]}-0"}, count=_READ_COUNT)
            pipe.xrevrange(stream, count=1)
            pipe.exists(self._meta(task_id))
            response, top, meta_exists = await pipe.execute()
        entries = _stream_entries(response, stream)
        if not entries:
            if not top and not meta_exists:
                raise RunNotFound()
            if _closed_at_or_before(top, cursor):
                return None
            block_ms = max(1, min(self._block_ms, int(wait * 1000)))
            response = await self._redis.xread(
                {stream: f"{cursor[0]}-0"}, count=_READ_COUNT, block=block_ms
            )
            entries = _stream_entries(response, stream)
            if not entries:
                return None if await self._ended_before(task_id, cursor) else []
        batch: list[RunEvent] = []
        for entry_id, fields in entries:
            if _is_sentinel(fields):
                return batch or None
            batch.append(
                RunEvent(
                    task_id=task_id,
                    seq=_parse_id(entry_id)[0],
                    event=fields[b"event"].decode(),
                    data=fields[b"payload"],
                )
            )
        return batch

    def follow(self, task_id: str, *, after: int = 0) -> AsyncIterator[RunEvent]:
        """Events with seq > `after`, live (XREAD BLOCK), until the sentinel; or RunNotFound."""
        return follow_by_reading(self, task_id, after=after)

    async def aclose(self) -> None:
        """Close the Redis client's connections."""
        await self._redis.aclose()

    async def _ended_before(self, task_id: str, cursor: tuple[int, int]) -> bool:
        """After an empty block: whether the run expired, or was closed before the cursor."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xrevrange(self._stream(task_id), count=1)
            pipe.exists(self._meta(task_id))
            top, meta_exists = await pipe.execute()
        return (not top and not meta_exists) or _closed_at_or_before(top, cursor)

    async def _read_top(self, task_id: str) -> tuple[int, bool]:
        """(last seq, closed) from the stream's top entry; RunNotFound when the run is unknown."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xrevrange(self._stream(task_id), count=1)
            pipe.exists(self._meta(task_id))
            top, meta_exists = await pipe.execute()
        if not top:
            if not meta_exists:
                raise RunNotFound()
            return 0, False
        entry_id, fields = top[0]
        return _parse_id(entry_id)[0], _is_sentinel(fields)

    def _remember(self, task_id: str, seq: int) -> None:
        self._last_seq[task_id] = seq
        if len(self._last_seq) > _MAX_REMEMBERED:
            self._last_seq.popitem(last=False)
