"""Generation tasks: runs (the `celery` executor, on the `generation` queue) and conversation
naming (on the `background` queue, a pool of its own in `conduit worker`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from celery import shared_task

from conduit.core.runs.backends import RunBackends, build_run_backends
from conduit.core.runs.lifecycle import run_to_end
from conduit.db.models import App, Conversation
from conduit.services import naming
from conduit.services.runs.chat import model_ref
from conduit.tasks.base import OutboxTask
from conduit.tasks.context import TaskParts, task_context

logger = logging.getLogger(__name__)


@shared_task(name="conduit.generation.run", base=OutboxTask, bind=True, autoretry_for=())
def run(self: OutboxTask, spec: dict[str, Any], slot_key: str | None = None) -> str:
    """Execute a run handed over by the API (the `celery` executor), with the runner of its
    kind; idempotent: a run that is no longer `running` (finished, or ended by the reaper), or
    that another delivery is running (its lease is live), is skipped."""
    parts = task_context(self)
    parsed = parts.runners.decode(spec)
    runner = parts.runners.get(parsed.kind)
    lease = parts.resources.settings.runs.lease_seconds

    async def execute(backends: RunBackends) -> str:
        # One statement claims the run: it still runs and no live executor holds it. It also
        # starts the lease the reaper watches.
        if not await runner.store.claim(parsed, lease):
            return "skipped"
        if slot_key:
            # Queued, its slot outlasted the wait; running, it lives as long as the lease.
            await backends.limiter.renew(slot_key, holder=parsed.task_id, ttl=lease)
        current = asyncio.current_task()
        assert current is not None
        parts.live.add(parsed.task_id, current)  # the worker's shutdown may cut it short
        try:
            result = await run_to_end(
                backends, parts.runners, parts.limits, parsed, slot_key=slot_key
            )
        finally:
            parts.live.discard(parsed.task_id)
        # (a chat's status is a RunStatus, a workflow's its own word: `paused`, say)
        return str(getattr(result.status, "value", result.status))

    try:
        status: str = asyncio.run(_with_backends(parts, execute))
    except asyncio.CancelledError:
        # Cut short by the worker's shutdown: stored `stopped` with its partial answer, its
        # log ended (the lifecycle's drain path). The task is done: it must not run again.
        status = "stopped"
    if status == "skipped":
        logger.info("run %s ended or runs elsewhere; this delivery skipped", parsed.task_id)
    else:
        logger.info("run %s ended %s", parsed.task_id, status)
    return status


async def _with_backends(parts: TaskParts, work: Any) -> Any:
    """Run `work(backends)` with the server's shared in-memory backends, or Redis ones made
    for this task's event loop (closed after it), and close the model sessions made on it."""
    try:
        if parts.backends is not None and parts.backends.shared:
            return await work(parts.backends)
        backends = build_run_backends(parts.resources.settings, worker=True)
        try:
            return await work(backends)
        finally:
            await backends.aclose()
    finally:
        await parts.models.aclose()  # the HTTP sessions made on this task's loop


@shared_task(name="conduit.generation.name_conversation", base=OutboxTask, bind=True)
def name_conversation(self: OutboxTask, conversation_id: str) -> str | None:
    """Name a new conversation from its first question (idempotent: only a default name)."""
    parts = task_context(self)
    found = parts.resources
    with found.db.sessions() as session:
        conversation = session.get(Conversation, conversation_id)
        app = session.get(App, conversation.app_id) if conversation else None
        if app is None:
            return None
        ref = model_ref(app, found.settings, session=session)

    async def work() -> str | None:
        models = parts.models
        try:
            model = await models.resolve(ref)
        except Exception as error:  # no model: keep the default name, do not retry forever
            logger.info("naming conversation %s skipped: %s", conversation_id, error)
            return None
        try:
            return await naming.name_conversation(
                found.db,
                model,
                conversation_id,
                ref.get("default_model") or found.settings.model.name,
            )
        finally:
            await models.aclose()  # the HTTP sessions made on this task's loop

    name: str | None = asyncio.run(work())
    logger.info("conversation %s named %r", conversation_id, name)
    return name
