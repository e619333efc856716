"""Signed callbacks: the retry policy (pure) and one signed POST to a checked address.

The delivery records and their transactions are `conduit/services/webhooks.py`'s; the Celery
task that makes one attempt per execution is `conduit/tasks/webhook.py`'s.
"""

from conduit.core.delivery.policy import Decision, Outcome, RetryPolicy, decide, retry_after
from conduit.core.delivery.sender import AttemptResult, send_signed

__all__ = [
    "AttemptResult",
    "Decision",
    "Outcome",
    "RetryPolicy",
    "decide",
    "retry_after",
    "send_signed",
]
