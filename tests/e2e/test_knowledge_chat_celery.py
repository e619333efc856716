"""Knowledge-backed runs again with the `celery` executor: the search runs where the run does
(a worker thread in the embedded mode, a `conduit worker` process in the distributed mode),
its plan carried in the run's body through the queue."""

from tests.e2e.test_knowledge_chat import TestChat, TestCompletion, kb_app, knowledge

EXECUTOR = "celery"

__all__ = ["TestChat", "TestCompletion", "kb_app", "knowledge"]
