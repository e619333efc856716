"""The run tests with the `celery` executor again, with RabbitMQ as the broker (distributed mode
only: the embedded mode has no broker). The stack uses the shared RabbitMQ node as an ordinary
broker, in a vhost of its own (created for this module, deleted afterwards)."""

from collections.abc import Iterator

import pytest

from tests import support
from tests.conftest import DISTRIBUTED
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

pytestmark = pytest.mark.skipif(not DISTRIBUTED, reason="a broker is the distributed mode's")

EXECUTOR = "celery"


@pytest.fixture(scope="module")
def service_broker_url() -> Iterator[str]:
    support.need_rabbitmq()
    with support.rabbitmq_vhost() as url:
        yield url


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
