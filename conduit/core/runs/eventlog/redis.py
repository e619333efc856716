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
`close()` closes the mirror's copy (this process's readers end at once), then waits for the
queue and the sentinel. Readers in this process read the mirror (no Redis round trip, no
blocking connection per follower); readers anywhere else, and any reader once the mirror forgot
the run (shortly after close, or evicted), read Redis. This assumes the instance is the run's
only writer, which holds for a run created here by the inline executor.

So this process's readers are ahead of Redis: by the linger and a round trip, or for as long
as Redis fails, by `MIRROR_LEAD` events at most (past that an append waits for Redis). A
process that dies takes what it had not written with it, and its readers may have been shown
ids Redis never got: a taker (`take_over()`, when the run's executor is gone) numbers its
events `MIRROR_LEAD` past Redis's top, so a reader resuming from the last id it was shown
still gets them (and the run's taker says what the stored answer is, `message_replace`).

Redis outages. Redis is only this writer's copy for other processes, so its failures do not
fail the run: the queued events stay queued and are sent again every `_RETRY_INTERVAL` until
Redis answers; a run Redis lost meanwhile (restarted empty: an XADD past the first entry is
NOMKSTREAM, so a lost stream is noticed instead of reborn with a gap) is written again whole
from the mirror, with its meta. `close()` waits `_CLOSE_WAIT` at most for that; the writer goes
on in the background, giving up (the copy in Redis then stays incomplete: readers elsewhere
miss the run's end) once Redis has failed for `_GIVE_UP_AFTER` with the run closed.

Adopted runs (`adopt=True`, for a process that writes runs created elsewhere: a Celery worker).
The first append to a run without events makes this instance its writer, exactly as `create()`
does in mirror mode (meta read back from Redis), so that its events too outlive an outage and
are written again whole after Redis lost them; nobody reads that copy but the writer. A run
that has events already (a redelivery) is appended to directly. Such a writer is only given
runs that exist (a worker claimed it in the database first), so a run Redis knows nothing of
is one Redis lost, and is adopted all the same (readers find its owner in the database); and
when Redis does not answer at the first append, the run is adopted on trust and the writer
makes sure, once Redis answers, that nobody wrote it meanwhile. `aclose()` waits up to
`flush_wait` for what closed runs still have to write (a worker's task ends with its run).

A writer of neither kind has no copy to fall back on: a failed append raises to the run, and a
stream Redis lost raises `RunEventsLost` rather than go on with a gap.
Retried commands (the clients retry once on a dead connection, `infra/redis.py`) never
duplicate an event: an XADD whose first try landed fails its repeat ("ID equal or smaller"),
and the writer then finds its own entry at the top of the stream and takes it as written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError
from redis.typing import EncodableT

from conduit.core.runs.eventlog.base import RunNotFound, follow_by_reading, join_frames
from conduit.core.runs.eventlog.memory import MemoryEventLog, RunClosed
from conduit.core.runs.events import Frames, RunEvent
from conduit.errors import RunEventsLost
from conduit.infra.redis import COMMAND_TIMEOUT, GroupCommit

logger = logging.getLogger(__name__)

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
# Their deadline per round trip: no request waits on them, so it may be longer.
_WRITE_BEHIND_TIMEOUT = 5.0
# While Redis fails, how often a writer behind the mirror tries again (seconds).
_RETRY_INTERVAL = 0.5
# How long `close()` waits for the writes behind the mirror (only long while Redis fails).
_CLOSE_WAIT = 5.0
# How long a writer behind the mirror keeps trying once its run is closed and Redis fails.
_GIVE_UP_AFTER = 60.0
# How many events an owned run may show its readers here that Redis does not have yet: past
# that its appends wait for Redis (while Redis fails, the run pauses there). A taker numbers
# its events past it (`take_over`), so that no reader of a writer that died has seen their ids.
MIRROR_LEAD = 1024

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
    """A run this instance writes (created here in mirror mode, or adopted): events numbered
    here, queued for Redis until Redis has them (an event leaves the queue only once its write
    succeeded)."""

    meta: dict[EncodableT, EncodableT]  # create()'s fields, written again if Redis lost them
    confirmed: bool = True  # False: adopted while Redis did not answer, not looked at yet
    last: int = 0
    queue: list[RunEvent] = field(default_factory=list)
    writer: asyncio.Task[None] | None = None  # drains `queue`, one round trip at a time
    closed: bool = False  # close() was called: the writer ends with the sentinel
    sent: asyncio.Event = field(default_factory=asyncio.Event)  # set when events left `queue`


def _encoded(fields: dict[EncodableT, EncodableT]) -> dict[bytes, bytes]:
    """The fields as Redis stores and returns them."""

    def encode(value: EncodableT) -> bytes:
        if isinstance(value, bytes):
            return value
        if isinstance(value, memoryview):
            return value.tobytes()
        return str(value).encode()

    return {encode(k): encode(v) for k, v in fields.items()}


def _decoded(meta: dict[EncodableT, EncodableT]) -> dict[str, str]:
    """A run's meta fields as `meta()` answers them (without the field every run has)."""
    return {k.decode(): v.decode() for k, v in _encoded(meta).items() if k != _CREATED_FIELD}


def _id_too_small(reply: Any) -> bool:
    return isinstance(reply, ResponseError) and _ID_TOO_SMALL in str(reply)


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
        adopt: bool = False,
        batches: aioredis.Redis | None = None,
        command_timeout: float = COMMAND_TIMEOUT,
        flush_wait: float = _CLOSE_WAIT,
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
        self._behind = GroupCommit(
            pipelined,
            linger=_WRITE_BEHIND_LINGER,
            timeout=max(command_timeout, _WRITE_BEHIND_TIMEOUT),
        )
        self._owned: OrderedDict[str, _Owned] = OrderedDict()
        self._reads_mirror = mirror
        self._adopt = adopt
        self._flush_wait = flush_wait
        self._mirror = (
            MemoryEventLog(
                retention=min(retention, _MIRROR_RETENTION),
                max_events_per_run=sys.maxsize,
                max_runs=_MIRROR_RUNS,
            )
            if mirror or adopt
            else None
        )

    def _stream(self, task_id: str) -> str:
        return f"{self._prefix}{task_id}"

    def _meta(self, task_id: str) -> str:
        return f"{self._prefix}{task_id}:meta"

    async def create(
        self, task_id: str, *, meta: dict[str, str] | None = None, written_here: bool = True
    ) -> None:
        """Open the run (idempotent: a second call merges `meta`); it expires if never closed.
        A run `written_here` in mirror mode is this process's to write (its local readers read
        the mirror); a queued one (an async run, written by a worker) is read from Redis."""
        fields: dict[EncodableT, EncodableT] = {_CREATED_FIELD: b"1"}
        fields.update(meta or {})
        meta_key, stream = self._meta(task_id), self._stream(task_id)

        def build(pipe: Any) -> None:
            pipe.hset(meta_key, mapping=fields)
            pipe.pexpire(meta_key, self._open_ttl_ms)
            pipe.pexpire(stream, self._open_ttl_ms)
            pipe.xrevrange(stream, count=1)  # where numbering goes on: the first append needs it

        *_, top = _checked(await self._batch.run(build))
        if not written_here:
            return  # its writer numbers its events (the first append reads where to go on)
        if not top:
            self._remember(task_id, 0)
            if self._reads_mirror and task_id not in self._owned:
                await self._own(task_id, fields)
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
        if owned is None and self._adopt and task_id not in self._last_seq:
            owned = await self._adopted(task_id)
        if owned is not None and len(owned.queue) + len(datas) > MIRROR_LEAD:
            owned = await self._within_lead(task_id, owned, len(datas))
        if owned is not None:
            return self._append_owned(task_id, owned, event, datas)
        return await self._append_direct(task_id, [(event, data) for data in datas])

    async def take_over(
        self, task_id: str, events: Sequence[tuple[str, dict[str, Any] | bytes]]
    ) -> list[RunEvent]:
        """The taker's events, numbered `MIRROR_LEAD` past the top of the run in Redis (a
        dead writer's readers may have seen that many more); in this process the run is
        released first (its writer here, if any, was only stalled: what it had queued, which
        the taker may have read here, goes to Redis first, for up to `_CLOSE_WAIT`)."""
        owned = self._owned.get(task_id)
        if owned is not None and owned.queue:
            deadline = asyncio.get_running_loop().time() + _CLOSE_WAIT
            while owned.queue and asyncio.get_running_loop().time() < deadline:
                await self._some_sent(task_id, owned)
        await self.release(task_id)
        datas = [(e, p if isinstance(p, bytes) else orjson.dumps(p)) for e, p in events]
        return await self._append_direct(task_id, datas, leap=MIRROR_LEAD)

    async def _within_lead(self, task_id: str, owned: _Owned, count: int) -> _Owned | None:
        """Wait while the run's readers here would be more than `MIRROR_LEAD` events ahead of
        Redis; the run as this instance then owns it (None: no longer)."""
        while (
            self._owned.get(task_id) is owned
            and owned.queue
            and len(owned.queue) + count > MIRROR_LEAD
        ):
            await self._some_sent(task_id, owned)
        return self._owned.get(task_id)

    async def _some_sent(self, task_id: str, owned: _Owned) -> None:
        """Wait until the run's writer has sent some of its queue (`_RETRY_INTERVAL` at most)."""
        owned.sent.clear()
        self._start_writer(task_id, owned)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(owned.sent.wait(), _RETRY_INTERVAL)

    async def _append_direct(
        self, task_id: str, events: Sequence[tuple[str, bytes]], leap: int = 0
    ) -> list[RunEvent]:
        """XADD the events as the run's next entry (numbered from its top in Redis, `leap`
        further on), retrying when another writer got there first."""
        stream = self._stream(task_id)
        for _ in range(3):
            last = self._last_seq.pop(task_id, None)
            if last is None:
                last, closed = await self._read_top(task_id)
                if closed:
                    raise RunClosed()
            first = last + leap + 1
            records = [
                RunEvent.from_data(task_id, first + i, event, data)
                for i, (event, data) in enumerate(events)
            ]
            # A lone event keeps the plain fields; several share one entry.
            fields: dict[EncodableT, EncodableT] = (
                {"event": records[0].event, "payload": events[0][1]}
                if len(records) == 1
                else _entry_fields(records)
            )

            def build(
                pipe: Any,
                fields: dict[EncodableT, EncodableT] = fields,
                records: list[RunEvent] = records,
                born: bool = last == 0,
            ) -> None:
                # Past the first entry the stream must exist: one Redis lost is not reborn.
                pipe.xadd(stream, fields, id=f"{records[-1].seq}-0", nomkstream=not born)
                if born:  # the stream is born here: give it the expiry
                    pipe.pexpire(stream, self._open_ttl_ms)  # create() could not

            added = (await self._batch.run(build))[0]
            if added is None:
                raise RunEventsLost()
            if _id_too_small(added):
                if await self._landed(stream, records[-1].seq, fields):
                    added = None  # a retried XADD whose first try landed: written, once
                else:
                    continue  # our remembered seq was stale (another writer, a restart): re-read
            if isinstance(added, Exception):
                raise added
            self._remember(task_id, records[-1].seq)
            return records
        raise RunClosed("Could not find the end of the run's log; is another writer appending?")

    async def _landed(self, stream: str, seq: int, fields: dict[EncodableT, EncodableT]) -> bool:
        """Whether the entry `{seq}-0` holds exactly `fields`: ours, written by a try whose
        reply was lost."""
        found = _checked(
            await self._batch.run(lambda pipe: pipe.xrange(stream, f"{seq}-0", f"{seq}-0"))
        )
        entries = found[0]
        return bool(entries) and dict(entries[0][1]) == _encoded(fields)

    async def _adopted(self, task_id: str) -> _Owned | None:
        """A run nobody has written yet, now this instance's (adopt mode); None when it has
        events already (written elsewhere before: appended to without the mirror)."""
        try:
            top, meta = await self._top_and_meta(task_id)
        except (RedisError, OSError) as failure:
            logger.warning("run %s: adopted while Redis does not answer: %r", task_id, failure)
            return await self._own(task_id, {}, confirmed=False)
        if top:
            if _is_sentinel(top[0][1]):
                raise RunClosed()
            self._remember(task_id, _parse_id(top[0][0])[0])
            return None
        return await self._own(task_id, meta)

    async def _confirm(self, task_id: str, owned: _Owned) -> None:
        """A run adopted while Redis did not answer: still nobody else's (or RunClosed)."""
        top, meta = await self._top_and_meta(task_id)
        if top:
            raise RunClosed(f"run {task_id} has events from another writer; not written here")
        owned.meta, owned.confirmed = meta, True

    async def _own(
        self, task_id: str, meta: dict[EncodableT, EncodableT], *, confirmed: bool = True
    ) -> _Owned:
        assert self._mirror is not None
        await self._mirror.create(task_id, meta=_decoded(meta))
        owned = self._owned[task_id] = _Owned(meta=meta, confirmed=confirmed)
        if len(self._owned) > _MIRROR_RUNS:
            # Runs created but never closed (e.g. refused after create): forget the oldest idle.
            idle = next((t for t, o in self._owned.items() if o.writer is None), None)
            if idle is not None:
                del self._owned[idle]
        return owned

    def _append_owned(
        self, task_id: str, owned: _Owned, event: str, datas: list[bytes]
    ) -> list[RunEvent]:
        if owned.closed:
            raise RunClosed()
        first = owned.last + 1
        records = [RunEvent.from_data(task_id, first + i, event, d) for i, d in enumerate(datas)]
        owned.last += len(records)
        assert self._mirror is not None
        if not self._mirror.add(records):
            self._mirror.forget(task_id)  # evicted from the mirror: its readers go to Redis
        owned.queue += records
        self._start_writer(task_id, owned)
        return records

    def _start_writer(self, task_id: str, owned: _Owned) -> asyncio.Task[None]:
        if owned.writer is None:
            owned.writer = asyncio.get_running_loop().create_task(self._write_owned(task_id, owned))
        return owned.writer

    async def _write_owned(self, task_id: str, owned: _Owned) -> None:
        """Send the run's queued events, all that queued meanwhile as one entry per round trip,
        and its sentinel once it is closed; while Redis fails, keep them and try again."""
        loop = asyncio.get_running_loop()
        failing_since: float | None = None
        try:
            while owned.queue or owned.closed:
                try:
                    if not owned.confirmed:
                        await self._confirm(task_id, owned)
                    if owned.queue:
                        await self._send_queued(task_id, owned)
                    elif await self._send_sentinel(task_id, owned):
                        self._forget_owned(task_id, owned)
                        return
                except (RunEventsLost, RunClosed) as lost:
                    logger.error("run %s: %s", task_id, lost.message)
                    self._forget_owned(task_id, owned)  # its next append reads Redis, and fails
                    return
                except Exception as failure:
                    now = loop.time()
                    if failing_since is None:
                        failing_since = now
                        logger.warning(
                            "run %s: its events cannot reach Redis, kept to send again: %r",
                            task_id,
                            failure,
                        )
                    elif owned.closed and now - failing_since >= _GIVE_UP_AFTER:
                        logger.error(
                            "run %s: Redis failed for %.0f s; its events there stay incomplete",
                            task_id,
                            now - failing_since,
                        )
                        self._forget_owned(task_id, owned)
                        return
                    await asyncio.sleep(_RETRY_INTERVAL)
                    continue
                if failing_since is not None:
                    logger.info("run %s: its events reach Redis again", task_id)
                    failing_since = None
        finally:
            owned.writer = None

    def _forget_owned(self, task_id: str, owned: _Owned) -> None:
        if self._owned.get(task_id) is owned:
            del self._owned[task_id]

    async def _send_queued(self, task_id: str, owned: _Owned) -> None:
        """One round trip of the run's queued events (one entry); they leave the queue once
        Redis has them."""
        stream, meta_key = self._stream(task_id), self._meta(task_id)
        events = owned.queue[:_ENTRY_EVENTS]
        born = events[0].seq == 1

        def build(pipe: Any) -> None:
            # Past the first entry the stream must exist: one Redis lost is not reborn with a
            # gap (the reply is None instead).
            pipe.xadd(stream, _entry_fields(events), id=f"{events[-1].seq}-0", nomkstream=not born)
            if born:  # the stream is born here: its expiry, and its meta (again, if lost)
                pipe.pexpire(stream, self._open_ttl_ms)
                if owned.meta:
                    pipe.hset(meta_key, mapping=owned.meta)
                    pipe.pexpire(meta_key, self._open_ttl_ms)

        added = (await self._behind.run(build))[0]
        if added is None:
            await self._requeue_all(task_id, owned)
        elif _id_too_small(added):
            # An earlier try landed though its reply was lost: what Redis has is not sent again.
            top, closed = await self._read_top(task_id)
            if closed:
                raise RunClosed(f"run {task_id} was ended elsewhere")
            owned.queue = [event for event in owned.queue if event.seq > top]
        elif isinstance(added, Exception):
            raise added
        else:
            del owned.queue[: len(events)]  # appends meanwhile went to the end
        owned.sent.set()

    async def _send_sentinel(self, task_id: str, owned: _Owned) -> bool:
        """Close the run in Redis; False when Redis lost it (it is then queued again whole)."""
        stream, meta_key = self._stream(task_id), self._meta(task_id)
        last = owned.last

        def build(pipe: Any) -> None:
            sentinel = {"event": CLOSED_EVENT, "payload": b"{}"}
            pipe.xadd(stream, sentinel, id=f"{last}-1", nomkstream=last > 0)
            if last == 0 and owned.meta:  # no events: the stream is born with its sentinel
                pipe.hset(meta_key, mapping=owned.meta)
            pipe.pexpire(stream, self._retention_ms)
            pipe.pexpire(meta_key, self._retention_ms)

        added = (await self._batch.run(build))[0]
        if added is None:
            await self._requeue_all(task_id, owned)
            return False
        if isinstance(added, Exception) and not _id_too_small(added):
            raise added
        return True  # written, or (too small) written by a try whose reply was lost

    async def _requeue_all(self, task_id: str, owned: _Owned) -> None:
        """Redis lost the run (restarted without its data): queue every event again, from the
        mirror, so that readers elsewhere find it whole rather than with a gap."""
        assert self._mirror is not None
        events: list[RunEvent] = []
        try:
            while True:
                batch = await self._mirror.read(task_id, after=len(events), wait=0)
                if not batch:
                    break
                events += batch
        except RunNotFound:
            pass
        if len(events) != owned.last:
            raise RunEventsLost(
                f"Redis lost run {task_id}'s events and the mirror no longer holds them all."
            )
        logger.warning("run %s: Redis lost its events; writing all %d again", task_id, len(events))
        owned.queue = events

    async def release(self, task_id: str) -> None:
        """Stop writing the run here: what is queued behind the mirror is dropped (the taker
        read the log as Redis had it), and the mirror forgets the run, so that this process's
        readers go on from Redis, where the taker's events land."""
        owned = self._owned.pop(task_id, None)
        if owned is not None:
            owned.queue.clear()
            if owned.writer is not None:
                owned.writer.cancel()  # and its tries while Redis fails: the log is the taker's
        self._last_seq.pop(task_id, None)
        if self._mirror is not None:
            self._mirror.forget(task_id)

    async def close(self, task_id: str) -> None:
        """Append the sentinel and start the retention (idempotent; unknown runs are ignored)."""
        if self._mirror is not None:
            # This process's readers end now, before Redis's copy (a linger late, or later while
            # Redis fails) has the run's last events and its sentinel.
            await self._mirror.close(task_id)
        owned = self._owned.get(task_id)
        if owned is None:
            await self._close(task_id)
            return
        owned.closed = True  # the writer ends with the sentinel
        writer = self._start_writer(task_id, owned)
        # A close that is cancelled, or that stops waiting while Redis fails, leaves the writer
        # going (until Redis has the whole run, or it gives up).
        await asyncio.wait({writer}, timeout=_CLOSE_WAIT)

    async def _close(self, task_id: str) -> None:
        stream, meta_key = self._stream(task_id), self._meta(task_id)
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
                sentinel = {"event": CLOSED_EVENT, "payload": b"{}"}
                pipe.xadd(stream, sentinel, id=f"{last}-1", nomkstream=last > 0)
                pipe.pexpire(stream, self._retention_ms)
                pipe.pexpire(meta_key, self._retention_ms)

            added = (await self._batch.run(build))[0]
            if added is None:
                logger.warning("run %s: Redis lost its events; nothing to close", task_id)
                return
            if not isinstance(added, Exception):
                return
            if not _id_too_small(added):
                raise added
            last = None  # something landed after our last seq (a close, or a stale cache): look
        raise RunClosed("Could not find the end of the run's log; is another writer appending?")

    async def meta(self, task_id: str) -> dict[str, str] | None:
        """The metadata given to create(), or None for an unknown or expired run. A run written
        here is known without Redis (so while it is down): from the mirror, or its writer."""
        if self._reads_mirror:
            assert self._mirror is not None
            kept = await self._mirror.meta(task_id)
            if kept is not None:
                return kept
        owned = self._owned.get(task_id)
        if owned is not None:
            return _decoded(owned.meta)
        key = self._meta(task_id)
        raw = _checked(await self._batch.run(lambda pipe: pipe.hgetall(key)))[0]
        return _decoded(raw) if raw else None

    async def read(self, task_id: str, *, after: int, wait: float) -> list[RunEvent] | None:
        """Events with seq > `after` (XREAD, one batch); when none are there, XREAD BLOCK for
        up to `wait` s; [] when nothing came, None past the sentinel, or RunNotFound."""
        if self._reads_mirror:
            assert self._mirror is not None
            try:
                return await self._mirror.read(task_id, after=after, wait=wait)
            except RunNotFound:
                pass  # not written here, or no longer in the mirror: Redis has it all
        return await self._read_redis(task_id, after=after, wait=wait)

    async def read_frames(self, task_id: str, *, after: int, wait: float) -> Frames | None:
        """`read()` as one chunk (from the mirror without an object per event)."""
        if self._reads_mirror:
            assert self._mirror is not None
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
        """Wait up to `flush_wait` for the writes of closed runs still behind (Redis failing),
        stop those still trying, and close the Redis clients."""
        closing = [o.writer for o in self._owned.values() if o.writer is not None and o.closed]
        if closing:
            await asyncio.wait(closing, timeout=self._flush_wait)
        writers = [owned.writer for owned in self._owned.values() if owned.writer is not None]
        for writer in writers:
            writer.cancel()
        if writers:
            await asyncio.wait(writers)
        await self._redis.aclose()
        if self._batches is not None:
            await self._batches.aclose()

    async def _ended_before(self, task_id: str, cursor: tuple[int, int]) -> bool:
        """After an empty block: whether the run expired, or was closed before the cursor."""
        top, meta = await self._top_and_meta(task_id)
        return (not top and not meta) or _closed_at_or_before(top, cursor)

    async def _top_and_meta(
        self, task_id: str
    ) -> tuple[list[_Entry], dict[EncodableT, EncodableT]]:
        """The stream's top entry and the run's meta fields (with `__created__`; empty for an
        unknown run), in one round trip."""
        stream, meta_key = self._stream(task_id), self._meta(task_id)

        def build(pipe: Any) -> None:
            pipe.xrevrange(stream, count=1)
            pipe.hgetall(meta_key)

        top, meta = _checked(await self._batch.run(build))
        return list(top), dict(meta)

    async def _read_top(self, task_id: str) -> tuple[int, bool]:
        """(last seq, closed) from the stream's top entry; RunNotFound when the run is unknown."""
        top, meta = await self._top_and_meta(task_id)
        if not top:
            if not meta:
                raise RunNotFound()
            return 0, False
        entry_id, fields = top[0]
        return _parse_id(entry_id)[0], _is_sentinel(fields)

    def _remember(self, task_id: str, seq: int) -> None:
        self._last_seq[task_id] = seq
        if len(self._last_seq) > _MAX_REMEMBERED:
            self._last_seq.popitem(last=False)
