"""`Runs`: what the run use cases need in this process, built once by `conduit/bootstrap.py`."""

from __future__ import annotations

from dataclasses import dataclass

from conduit.core.llm.registry import ModelRegistry
from conduit.core.runs.backends import RunBackends
from conduit.core.runs.executors.inline import InlineExecutor
from conduit.core.runs.kinds import AppRunners
from conduit.core.runs.lifecycle import RunLimits
from conduit.infra.cache import Cache
from conduit.infra.db import Database
from conduit.infra.settings import Settings


@dataclass
class Runs:
    """The process's run machinery: its database and cache, its models, its run backends
    (event log, stop registry, limiter), its app runners by kind, the run limits, and the
    inline executor (None when runs go to Celery's `generation` queue)."""

    settings: Settings
    db: Database
    cache: Cache | None
    models: ModelRegistry
    backends: RunBackends
    runners: AppRunners
    limits: RunLimits
    inline: InlineExecutor | None


def run_limits(settings: Settings) -> RunLimits:
    return RunLimits(
        max_seconds=float(settings.runs.max_seconds),
        async_max_seconds=float(settings.runs.async_max_seconds),
        lease_seconds=settings.runs.lease_seconds,
        lease_renewal=settings.runs.lease_seconds / 4,
        checkpoint_every=min(settings.runs.checkpoint_seconds, settings.runs.lease_seconds / 4),
    )
