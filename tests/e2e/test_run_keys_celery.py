"""The Idempotency-Key tests again with the `celery` executor: the run is an outbox row of the
start's transaction, executed on the `generation` queue (a worker thread embedded, a `conduit
worker` process distributed); a repeat attaches to it through the event log alone."""

from tests.e2e.test_run_keys import TestIdempotencyKeys

EXECUTOR = "celery"

__all__ = ["TestIdempotencyKeys"]
