"""The Redis Limiter: two Lua scripts on sorted sets, timed by the Redis server's clock.

Concurrency slots: a ZSET per key, member = holder, score = the slot's expiry (ms); expired
slots are dropped before counting, so a crashed holder frees only its own slot and cannot skew
the count (unlike INCR/DECR with a TTL). Sliding window: a ZSET per key of request times (µs);
a denied request is not recorded, and the answer is how long until enough old ones leave.
Both are single scripts (no check-then-set) using `redis.call('TIME')`, so app servers with
skewed clocks agree. Keys: `{prefix}slots:{key}` and `{prefix}rate:{key}`.
"""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

# KEYS[1] = slots ZSET; ARGV = limit, ttl_ms, holder. 1 when the slot is taken (or renewed).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[3])
   and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
"""

# KEYS[1] = slots ZSET; ARGV = ttl_ms, holder. The holder's slot expires ttl_ms from now.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
"""

# KEYS[1] = slots ZSET. Milliseconds until its first slot expires (0 when none is held).
_FREE_IN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 then return 0 end
local wait = tonumber(first[2]) - now
if wait < 0 then wait = 0 end
return wait
"""

# KEYS[1] = window ZSET; ARGV = limit, window_us, unique member. 0 when allowed, else the
# wait in µs until the request would be allowed (at least 1). A member already there is this
# very request, sent again after its reply was lost (the client retries once on a dead
# connection): it was allowed, and is not counted twice.
_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  return 0
end
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  return 0
end
if limit <= 0 then
  return window
end
local oldest = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
local wait = tonumber(oldest[2]) + window - now
if wait < 1 then wait = 1 end
return wait
"""


class RedisLimiter:
    """Limiter on Redis; the backend owns `client` and closes it in `aclose()`."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "conduit:limit:") -> None:
        self._redis = client
        self._prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)
        self._hit = client.register_script(_HIT)
        self._renew = client.register_script(_RENEW)
        self._free_in = client.register_script(_FREE_IN)

    def _slots_key(self, key: str) -> str:
        return f"{self._prefix}slots:{key}"

    def _rate_key(self, key: str) -> str:
        return f"{self._prefix}rate:{key}"

    async def acquire(self, key: str, *, limit: int, ttl: float, holder: str) -> bool:
        """Take a slot for `ttl` seconds (a holder re-acquiring renews its own); False if full."""
        taken = await self._acquire(
            keys=[self._slots_key(key)], args=[limit, max(1, int(ttl * 1000)), holder]
        )
        return bool(taken)

    async def renew(self, key: str, *, holder: str, ttl: float) -> None:
        await self._renew(keys=[self._slots_key(key)], args=[max(1, int(ttl * 1000)), holder])

    async def free_in(self, key: str) -> float:
        return int(await self._free_in(keys=[self._slots_key(key)])) / 1000

    async def release(self, key: str, holder: str) -> None:
        """Give the holder's slot back (no-op when it holds none)."""
        await self._redis.zrem(self._slots_key(key), holder)

    async def hit(self, key: str, *, limit: int, window: float) -> float:
        """Count a request; 0.0 when within `limit` per `window`, else seconds to wait."""
        wait_us = await self._hit(
            keys=[self._rate_key(key)],
            args=[limit, max(1, int(window * 1_000_000)), uuid.uuid4().hex],
        )
        return int(wait_us) / 1_000_000

    async def aclose(self) -> None:
        """Close the Redis client's connections."""
        await self._redis.aclose()
