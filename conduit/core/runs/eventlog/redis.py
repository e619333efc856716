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

An entry may hold several consecutive events: its id is the seq of its last one, field `n` the
count, `e` their event names separated by spaces and `f` their finished SSE frames end to end
(a frame ends with a blank line, which JSON never contains, so the frames split apart again).
Three fields whatever the count: encoding a command costs per argument. The events of one
`extend()` share an entry; a lone event appended by a writer without the mirror keeps
`event`/`payload`. A reader from a cursor inside an entry skips the events it already has.

Round trips: every non-blocking command goes through one `GroupCommit`, so the appends, first
looks and closes of all runs that arrive while a round trip is in flight share the next one.
The writes behind the mirror (below) go through a second one that lingers 50 ms before each
round trip, so that a run's events share an entry and many runs' entries share a pipeline even
when each run is slow; a reader in another process is that much behind.

Local mirror (`mirror=True`, for a process whose runs are written where they are created: the
inline executor). `create()` of a new run makes this instance its writer and opens it in an
in-process `MemoryEventLog`. Its appends are numbered here, land in the mirror at once, and reach
Redis behind it: while one write of the run is in flight, further events queue and go out
together as one multi-event entry (so a fast model costs one XADD per round trip, not per token).
A failed write raises from the run's next append; `close()` closes the mirror's copy (this
process's readers end at once), then waits for the queue and appends the sentinel. Readers in
this process read the mirror (no Redis round trip, no blocking connection per follower);
readers anywhere else, and any reader once the mirror forgot the run (shortly after close, or
evicted), read Redis. This assumes the instance is the run's only writer, which holds for a run
created here by the inline executor.
"""

from __future__ import annotations

import asyncio
import sys
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from redis.typing import EncodableT

from conduit.core.runs.eventlog.base import RunNotFound, follow_by_reading, join_frames
from conduit.core.runs.eventlog.memory import MemoryEventLog, RunClosed
from conduit.core.runs.events import Frames, RunEvent
from conduit.infra.redis import GroupCommit

CLOSED_EVENT = "__closed__"
_CLOSED = CLOSED_EVENT.encode()
# A field every meta hash has, so that a run created without meta still exists; never returned.
_CREATED_FIELD = b"__created__"
_READ_COUNT = 500
# Runs whose last seq this writer remembers; a forgotten one costs one XREVRANGE, nothing more.
_MAX_REMEMBERED = 10_000
# Redis's answer when an explicit XADD id is not above the stream's top.
_ID_TOO_SMALL = "equal or smaller"
# Events one stream entry holds at most (a run far ahead of Redis sends several entries).
_ENTRY_EVENTS = 256
# How long the local mirror keeps a closed run (readers still finishing it); Redis keeps it on.
_MIRROR_RETENTION = 30.0
# Runs the local mirror holds at most (the longest idle open run is dropped first).
_MIRROR_RUNS = 50_000
# How long a write behind the mirror waits for more events of its run (one entry) and for
# other runs' writes (one pipeline), in seconds: how far behind a reader in another process
# may be, besides a round trip, while this process's own readers read the mirror at once.
_WRITE_BEHIND_LINGER = 0.05

_Entry = tuple[bytes, dict[bytes, bytes]]


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _parse_id(entry_id: bytes) -> tuple[int, int]:
    seq, _, sub = entry_id.partition(b"-")
    return int(seq), int(sub or 0)


def _is_sentinel(fields: dict[bytes, bytes]) -> bool:
    return fields.get(b"event") == _CLOSED


_FRAME_END = b"\n\n"


def _entry_fields(events: list[RunEvent]) -> dict[EncodableT, EncodableT]:
    return {
        "n": len(events),
        "e": " ".join([record.event for record in events]),
        "f": b"".join([record.frame for record in events]),
    }


def _entry_events(task_id: str, entry: _Entry, after: int) -> list[RunEvent]:
    """The events of one entry with seq > `after`."""
    entry_id, fields = entry
    last = _parse_id(entry_id)[0]
    frames = fields.get(b"f")
    if frames is None:
        return [RunEvent.from_data(task_id, last, fields[b"event"].decode(), fields[b"payload"])]
    names = fields[b"e"].decode().split(" ")
    parts = frames.split(_FRAME_END)  # n frames, then the empty rest after the last blank line
    if len(parts) != len(names) + 1 or parts[-1]:
        raise ValueError(f"run {task_id}: stream entry {entry_id!r} is malformed")
    first = last - len(names) + 1
    return [
        RunEvent(task_id, first + i, names[i], parts[i] + _FRAME_END)
        for i in range(max(0, after - first + 1), len(names))
    ]


@dataclass(eq=False)
class _Owned:
    """A run this instance writes (mirror mode): events numbered here, queued for Redis."""

    last: int
    queue: list[RunEvent] = field(default_factory=list)
    writer: asyncio.Task[None] | None = None  # drains `queue`, one round trip at a time
    error: Exception | None = None  # a failed write, raised by the next append


def _checked(replies: list[Any]) -> list[Any]:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


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
    """EventLog on Redis Streams; the backend owns its clients and closes them in `aclose()`.

    `client` serves the blocking reads (XREAD BLOCK, below its socket timeout); `batches`, if
    given, the pipelined commands, which never block: best a client without a socket timeout,
    each round trip then having one deadline, `command_timeout`."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "conduit:run:",
        retention: float = 600,
        block_ms: int = 5000,
        abandon_after: float = 24 * 3600,
        mirror: bool = False,
        batches: aioredis.Redis | None = None,
        command_timeout: float = 5.0,
    ) -> None:
        self._redis = client
        self._batches = batches
        self._prefix = prefix
        self._retention_ms = _ms(retention)
        self._open_ttl_ms = _ms(retention + abandon_after)
        self._block_ms = _block_below_socket_timeout(client, block_ms)
        self._last_seq: OrderedDict[str, int] = OrderedDict()
        pipelined = batches or client
        self._batch = GroupCommit(pipelined, timeout=command_timeout)
        # The writes behind the mirror: this process's readers already have those events, so
        # they may wait a moment for more events of the run and for the other runs' writes, and
        # share one entry and one pipeline with them.
        self._behind = GroupCommit(pipelined, linger=_WRITE_BEHIND_LINGER, timeout=command_timeout)
        self._owned: OrderedDict[str, _Owned] = OrderedDict()
        self._mirror = (
            MemoryEventLog(
                retention=min(retention, _MIRROR_RETENTION),
                max_events_per_run=sys.maxsize,
                max_runs=_MIRROR_RUNS,
            )
            if mirror
            else None
        )

    def _stream(self, task_id: str) -> str:
        return f"{self._prefix}{task_id}"

    def _meta(self, task_id: str) -> str:
        return f"{self._prefix}{task_id}:meta"

    async def create(self, task_id: str, *, meta: dict[str, str] | None = None) -> None:
        """Open the run (idempotent: a second call merges `meta`); it expires if never closed."""
        fields: dict[EncodableT, EncodableT] = {_CREATED_FIELD: b"1"}
        fields.update(meta or {})
        meta_key, stream = self._meta(task_id), self._stream(task_id)

        def build(pipe: Any) -> None:
            pipe.hset(meta_key, mapping=fields)
            pipe.pexpire(meta_key, self._open_ttl_ms)
            pipe.pexpire(stream, self._open_ttl_ms)
            pipe.xrevrange(stream, count=1)  # where numbering goes on: the first append needs it

        *_, top = _checked(await self._batch.run(build))
        if not top:
            self._remember(task_id, 0)
            if self._mirror is not None and task_id not in self._owned:
                await self._mirror.create(task_id)
                self._own(task_id)
        elif not _is_sentinel(top[0][1]):
            self._remember(task_id, _parse_id(top[0][0])[0])

    async def append(self, task_id: str, event: str, payload: dict[str, Any] | bytes) -> RunEvent:
        """XADD the next event; raises RunNotFound for an unknown run, RunClosed after close."""
        return (await self.extend(task_id, event, [payload]))[0]

    async def extend(
        self, task_id: str, event: str, payloads: Sequence[dict[str, Any] | bytes]
    ) -> list[RunEvent]:
        """Append the next events as one stream entry (all or none); raises like `append`."""
        if not payloads:
            return []
        datas = [p if isinstance(p, bytes) else orjson.dumps(p) for p in payloads]
        owned = self._owned.get(task_id)
        if owned is not None:
            return self._append_owned(task_id, owned, event, datas)
        stream = self._stream(task_id)
        for _ in range(3):
            last = self._last_seq.pop(task_id, None)
            if last is None:
                last, closed = await self._read_top(task_id)
                if closed:
                    raise RunClosed()
            records = [
                RunEvent.from_data(task_id, last + 1 + i, event, data)
                for i, data in enumerate(datas)
            ]
            # A lone event keeps the plain fields; several share one entry.
            fields: dict[EncodableT, EncodableT] = (
                {"event": event, "payload": datas[0]}
                if len(records) == 1
                else _entry_fields(records)
            )

            def build(
                pipe: Any,
                fields: dict[EncodableT, EncodableT] = fields,
                records: list[RunEvent] = records,
            ) -> None:
                pipe.xadd(stream, fields, id=f"{records[-1].seq}-0")
                if records[0].seq == 1:  # the stream is born here: give it the expiry
                    pipe.pexpire(stream, self._open_ttl_ms)  # create() could not

            added = (await self._batch.run(build))[0]
            if isinstance(added, ResponseError) and _ID_TOO_SMALL in str(added):
                continue  # our remembered seq was stale (another writer, or a restart): re-read
            if isinstance(added, Exception):
                raise added
            self._remember(task_id, records[-1].seq)
            return records
        raise RunClosed("Could not find the end of the run's log; is another writer appending?")

    def _own(self, task_id: str) -> None:
        self._owned[task_id] = _Owned(last=0)
        if len(self._owned) > _MIRROR_RUNS:
            # Runs created but never closed (e.g. refused after create): forget the oldest idle.
            idle = next((t for t, o in self._owned.items() if o.writer is None), None)
            if idle is not None:
                del self._owned[idle]

    def _append_owned(
        self, task_id: str, owned: _Owned, event: str, datas: list[bytes]
    ) -> list[RunEvent]:
        if owned.error is not None:
            error, owned.error = owned.error, None
            raise error
        first = owned.last + 1
        records = [RunEvent.from_data(task_id, first + i, event, d) for i, d in enumerate(datas)]
        owned.last += len(records)
        assert self._mirror is not None
        if not self._mirror.add(records):
            self._mirror.forget(task_id)  # evicted from the mirror: its readers go to Redis
        owned.queue += records
        if owned.writer is None:
            owned.writer = asyncio.get_running_loop().create_task(self._write_owned(task_id, owned))
        return records

    async def _write_owned(self, task_id: str, owned: _Owned) -> None:
        """Send the run's queued events, all that queued meanwhile as one entry per round trip."""
        stream = self._stream(task_id)
        try:
            while owned.queue:
                events, owned.queue = owned.queue[:_ENTRY_EVENTS], owned.queue[_ENTRY_EVENTS:]

                def build(pipe: Any, events: list[RunEvent] = events) -> None:
                    pipe.xadd(stream, _entry_fields(events), id=f"{events[-1].seq}-0")
                    if events[0].seq == 1:  # the stream is born here: give it its expiry
                        pipe.pexpire(stream, self._open_ttl_ms)

                try:
                    added = (await self._behind.run(build))[0]
                except Exception as failure:
                    added = failure
                if isinstance(added, Exception):
                    owned.error = added
        finally:
            owned.writer = None

    async def release(self, task_id: str) -> None:
        """Stop writing the run here: what is queued behind the mirror is dropped (the taker
        read the log as Redis had it), and the mirror forgets the run, so that this process's
        readers go on from Redis, where the taker's events land."""
        owned = self._owned.pop(task_id, None)
        if owned is not None:
            owned.queue.clear()
        self._last_seq.pop(task_id, None)
        if self._mirror is not None:
            self._mirror.forget(task_id)

    async def close(self, task_id: str) -> None:
        """Append the sentinel and start the retention (idempotent; unknown runs are ignored)."""
        if self._mirror is not None:
            # This process's readers end now; Redis's copy follows once the writes behind the
            # mirror (up to a linger late) have landed, so a close never waits for them.
            await self._mirror.close(task_id)
        await self._close(task_id)

    async def _close(self, task_id: str) -> None:
        stream, meta_key = self._stream(task_id), self._meta(task_id)
        owned = self._owned.get(task_id)
        if owned is not None:
            while owned.writer is not None:  # what is queued reaches Redis before the sentinel
                await asyncio.shield(owned.writer)
            self._owned.pop(task_id, None)
            self._remember(task_id, owned.last)
        last = self._last_seq.pop(task_id, None)
        for _ in range(3):
            if last is None:
                try:
                    last, closed = await self._read_top(task_id)
                except RunNotFound:
                    return
                if closed:
                    return

            def build(pipe: Any, last: int = last) -> None:
                pipe.xadd(stream, {"event": CLOSED_EVENT, "payload": b"{}"}, id=f"{last}-1")
                pipe.pexpire(stream, self._retention_ms)
                pipe.pexpire(meta_key, self._retention_ms)

            added = (await self._batch.run(build))[0]
            if not isinstance(added, Exception):
                return
            if not isinstance(added, ResponseError) or _ID_TOO_SMALL not in str(added):
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
        if self._mirror is not None:
            try:
                return await self._mirror.read(task_id, after=after, wait=wait)
            except RunNotFound:
                pass  # not written here, or no longer in the mirror: Redis has it all
        return await self._read_redis(task_id, after=after, wait=wait)

    async def read_frames(self, task_id: str, *, after: int, wait: float) -> Frames | None:
        """`read()` as one chunk (from the mirror without an object per event)."""
        if self._mirror is not None:
            try:
                return await self._mirror.read_frames(task_id, after=after, wait=wait)
            except RunNotFound:
                pass
        return join_frames(await self._read_redis(task_id, after=after, wait=wait), after)

    async def _read_redis(self, task_id: str, *, after: int, wait: float) -> list[RunEvent] | None:
        stream, meta_key = self._stream(task_id), self._meta(task_id)
        cursor = (max(after, 0), 0)

        # One round trip for the first look: what is there already, and whether the run exists
        # or is closed (needed only when nothing is there, but it rides along for free).
        def first_look(pipe: Any) -> None:
            pipe.xread({stream: f"{cursor[0]}-0"}, count=_READ_COUNT)
            pipe.xrevrange(stream, count=1)
            pipe.exists(meta_key)

        response, top, meta_exists = _checked(await self._batch.run(first_look))
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
        for entry in entries:
            if _is_sentinel(entry[1]):
                return batch or None
            batch += _entry_events(task_id, entry, cursor[0])
        return batch

    def follow(self, task_id: str, *, after: int = 0) -> AsyncIterator[RunEvent]:
        """Events with seq > `after`, live (XREAD BLOCK), until the sentinel; or RunNotFound."""
        return follow_by_reading(self, task_id, after=after)

    async def aclose(self) -> None:
        """Close the Redis clients' connections."""
        await self._redis.aclose()
        if self._batches is not None:
            await self._batches.aclose()

    async def _ended_before(self, task_id: str, cursor: tuple[int, int]) -> bool:
        """After an empty block: whether the run expired, or was closed before the cursor."""
        top, meta_exists = await self._top_and_meta(task_id)
        return (not top and not meta_exists) or _closed_at_or_before(top, cursor)

    async def _top_and_meta(self, task_id: str) -> tuple[list[_Entry], bool]:
        stream, meta_key = self._stream(task_id), self._meta(task_id)

        def build(pipe: Any) -> None:
            pipe.xrevrange(stream, count=1)
            pipe.exists(meta_key)

        top, meta_exists = _checked(await self._batch.run(build))
        return list(top), bool(meta_exists)

    async def _read_top(self, task_id: str) -> tuple[int, bool]:
        """(last seq, closed) from the stream's top entry; RunNotFound when the run is unknown."""
        top, meta_exists = await self._top_and_meta(task_id)
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
