"""The Redis StopRegistry: stop requests reach a runner in any process.

Keys: `{prefix}{task_id}:owner` (the owner, expiring with the run's ttl) and
`{prefix}{task_id}:stop` (the flag, expiring with the owner). `request_stop()` is one Lua
script, so the owner check and the flag cannot be split by a concurrent `forget()` or expiry.
`wait_for_stop()` is served by one poller per registry: every 0.2 s a single MGET reads the
flags of all runs waiting in this process, so thousands of live runs cost one round trip per
interval instead of one each. A stop requested through the same registry (the usual case with
the inline executor) wakes the run's waiters at once, without waiting for the poller. Waiters
just wait: a poller that ends while runs still wait (a failure, a cancel) is started again by
its done-callback, so no failure of the poller can leave a run deaf to stop, and a process
holding thousands of runs does not wake each of them every second to check.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

POLL_INTERVAL = 0.2

# KEYS[1] = owner key, KEYS[2] = flag key; ARGV[1] = owner, ARGV[2] = flag ttl (ms) when the
# owner key has no expiry. The flag lives exactly as long as the owner does.
_REQUEST_STOP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then ttl = tonumber(ARGV[2]) end
redis.call('SET', KEYS[2], '1', 'PX', ttl)
return 1
"""
_FALLBACK_FLAG_TTL_MS = 24 * 3600 * 1000


class RedisStopRegistry:
    """StopRegistry on Redis; the backend owns `client` and closes it in `aclose()`."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "conduit:stop:") -> None:
        self._redis = client
        self._prefix = prefix
        self._request_stop = client.register_script(_REQUEST_STOP)
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._closed = False

    def _owner_key(self, task_id: str) -> str:
        return f"{self._prefix}{task_id}:owner"

    def _flag_key(self, task_id: str) -> str:
        return f"{self._prefix}{task_id}:stop"

    async def register(self, task_id: str, owner: str, *, ttl: float) -> None:
        """Record the run's owner for `ttl` seconds."""
        await self._redis.set(self._owner_key(task_id), owner, px=max(1, int(ttl * 1000)))

    async def request_stop(self, task_id: str, owner: str) -> bool:
        """Flag the run stopped if `owner` owns it (atomically); True when it was flagged."""
        marked = bool(
            await self._request_stop(
                keys=[self._owner_key(task_id), self._flag_key(task_id)],
                args=[owner, _FALLBACK_FLAG_TTL_MS],
            )
        )
        if marked:
            self._wake(task_id)  # a run of this process stops now; others via their poller
        return marked

    async def is_stop_requested(self, task_id: str) -> bool:
        """Whether a stop was requested (and has not expired or been forgotten)."""
        return bool(await self._redis.exists(self._flag_key(task_id)))

    async def wait_for_stop(self, task_id: str) -> None:
        """Return once the flag is set (seen within ~0.2 s); cancel to stop waiting."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(task_id, []).append(future)
        try:
            self._ensure_poller()
            await future
        finally:
            waiting = self._waiters.get(task_id)
            if waiting is not None:
                if future in waiting:
                    waiting.remove(future)
                if not waiting:
                    del self._waiters[task_id]

    async def _poll(self) -> None:
        """One MGET per interval for every waiting run of this process; ends when none wait.

        A Redis error is logged (once per outage) and polling goes on: an outage must not stop
        a run."""
        failing = False
        while self._waiters:
            task_ids = list(self._waiters)
            try:
                flags = await self._redis.mget([self._flag_key(t) for t in task_ids])
                failing = False
            except Exception as error:  # RedisError, or a reply that is not MGET's
                if not failing:
                    logger.warning("stop flags unreadable: %r", error)
                failing = True
                flags = [None] * len(task_ids)
            if len(flags) != len(task_ids):
                flags = [None] * len(task_ids)
            for task_id, flag in zip(task_ids, flags, strict=True):
                if flag is not None:
                    self._wake(task_id)
            await asyncio.sleep(POLL_INTERVAL)

    def _ensure_poller(self) -> None:
        if self._closed or (self._poller is not None and not self._poller.done()):
            return
        self._poller = asyncio.ensure_future(self._poll())
        self._poller.add_done_callback(self._poller_ended)

    def _poller_ended(self, poller: asyncio.Task[None]) -> None:
        if self._closed or not self._waiters:
            return
        failure = None if poller.cancelled() else poller.exception()
        if failure is None:
            self._ensure_poller()  # cancelled, or a waiter came as it finished
            return
        logger.warning("stop poller failed, restarting: %r", failure)
        asyncio.get_running_loop().call_later(POLL_INTERVAL, self._ensure_poller)

    def _wake(self, task_id: str) -> None:
        for future in self._waiters.get(task_id, []):
            if not future.done():
                future.set_result(None)

    async def forget(self, task_id: str) -> None:
        """Drop the run's owner and flag. Cleanup only: while Redis fails it is skipped (logged)
        rather than fail the run's end; both keys expire with the run's ttl anyway."""
        try:
            await self._redis.delete(self._owner_key(task_id), self._flag_key(task_id))
        except (RedisError, OSError) as error:
            logger.warning("run %s: its stop keys were left to expire: %r", task_id, error)

    async def aclose(self) -> None:
        """Stop the poller and close the Redis client's connections."""
        self._closed = True
        if self._poller is not None:
            self._poller.cancel()
        await self._redis.aclose()
