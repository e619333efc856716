"""Executors hand a committed run to whatever runs it: `inline` (an asyncio task in this API
process) or `celery` (a task on the `generation` queue, via the outbox)."""
