"""The run-input tests again with the `celery` executor: refused input must be a 400 there
too (a NUL in `inputs` was a 503 with `Retry-After` on PostgreSQL, retried forever)."""

from tests.e2e.test_request_input import (
    STACK_ENV,
    TestBodySize,
    TestResumePosition,
    TestUnstorableValues,
    connection,
    console,
)

EXECUTOR = "celery"

__all__ = [
    "STACK_ENV",
    "TestBodySize",
    "TestResumePosition",
    "TestUnstorableValues",
    "connection",
    "console",
]
