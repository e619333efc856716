"""Run event logs: the `EventLog` interface and its memory and Redis Streams backends."""

from conduit.core.runs.eventlog.base import EventLog, RunNotFound
from conduit.core.runs.eventlog.memory import EventLogFull, MemoryEventLog, RunClosed
from conduit.core.runs.eventlog.redis import RedisEventLog

__all__ = [
    "EventLog",
    "EventLogFull",
    "MemoryEventLog",
    "RedisEventLog",
    "RunClosed",
    "RunNotFound",
]
