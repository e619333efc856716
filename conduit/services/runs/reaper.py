"""Ending runs whose executor is gone, so that no run stays `running`.

A live run renews its lease every quarter of `CONDUIT_RUNS_LEASE_SECONDS` (its message's
`renewed_at`, `store.renew_lease`) and is cut by its own lifecycle at `CONDUIT_RUNS_MAX_SECONDS`;
so a run whose lease lapsed, or that was never renewed long after the longest a run may take
(queued, or its executor died before its first renewal), has no executor left.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from conduit.db.models import utcnow
from conduit.infra.settings import Settings
from conduit.services.runs.store import end_runs


def end_interrupted_runs(session: Session) -> int:
    """End every `running` run as failed (its partial answer kept): for a process that is the
    only one running them, at its start (the embedded mode)."""
    return end_runs(session, lease_lapsed_before=None, never_renewed_before=None)


def reap_stale_runs(session: Session, settings: Settings) -> int:
    """End the runs whose executor is gone (see the module's docstring); never a live one."""
    now = utcnow()
    return end_runs(
        session,
        lease_lapsed_before=now - timedelta(seconds=settings.runs.lease_seconds),
        never_renewed_before=now - timedelta(seconds=settings.runs.max_seconds + 60),
    )
