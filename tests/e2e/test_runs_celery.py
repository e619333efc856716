"""The run tests again with the `celery` executor: runs execute on the `generation` queue (a
worker thread in the embedded mode, a `conduit worker` process in the distributed mode) and the
API only reads the event log."""

from tests.e2e.test_runs import (
    TestBlocking,
    TestConversations,
    TestDisconnect,
    TestLimits,
    TestResume,
    TestRunNames,
    TestStop,
    TestStreaming,
    TestUpstreamFailures,
)

EXECUTOR = "celery"

__all__ = [
    "TestBlocking",
    "TestConversations",
    "TestDisconnect",
    "TestLimits",
    "TestResume",
    "TestRunNames",
    "TestStop",
    "TestStreaming",
    "TestUpstreamFailures",
]
