"""Tasks of the `generation` queue: runs (the `celery` executor) and conversation naming."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

from celery import shared_task
from sqlalchemy import select

from conduit.core.llm.registry import ModelRegistry
from conduit.core.runs.backends import RunBackends, build_run_backends
from conduit.core.runs.runner import RunSpec
from conduit.db.models import Message
from conduit.infra.runtime import resources
from conduit.services import naming
from conduit.services.runs import RunEnvironment, model_defaults, process_runs, run_spec
from conduit.tasks.base import OutboxTask

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_registry: tuple[int, ModelRegistry] | None = None


def _models() -> ModelRegistry:
    """The process's model registry: the server's own (embedded) or one built after fork."""
    global _registry
    bound = process_runs()
    if bound is not None:
        return bound[1]
    with _lock:
        if _registry is None or _registry[0] != os.getpid():
            _registry = (os.getpid(), ModelRegistry(model_defaults(resources().settings)))
        return _registry[1]


async def _with_backends(work: Any) -> Any:
    """Run `work(backends)` with the process's shared in-memory backends, or Redis ones made
    for this task's event loop (and closed after it)."""
    bound = process_runs()
    if bound is not None and bound[0] is not None and bound[0].shared:
        return await work(bound[0])
    backends: RunBackends = build_run_backends(resources().settings)
    try:
        return await work(backends)
    finally:
        await backends.aclose()


def _still_running(message_id: str) -> bool:
    with resources().db.sessions() as session:
        status = session.scalars(select(Message.status).where(Message.id == message_id)).first()
    return status == "running"


@shared_task(name="conduit.generation.run", base=OutboxTask, bind=True, autoretry_for=())
def run(self: OutboxTask, spec: dict[str, Any], slot_key: str | None = None) -> str:
    """Execute a run handed over by the API (the `celery` executor); idempotent."""
    parsed = RunSpec.from_json(spec)
    if not _still_running(parsed.message_id):
        logger.info("run %s already ended; redelivery skipped", parsed.task_id)
        return "skipped"

    async def execute(backends: RunBackends) -> str:
        try:
            return await _execute(backends)
        finally:
            await _models().aclose()  # the HTTP sessions made on this task's loop

    async def _execute(backends: RunBackends) -> str:
        env = RunEnvironment(
            db=resources().db,
            eventlog=backends.eventlog,
            stops=backends.stops,
            limiter=backends.limiter,
            resolve_model=_models().resolve,
            loop=asyncio.get_running_loop(),
        )
        result = await run_spec(env, parsed, slot_key=slot_key)
        return result.status.value

    status: str = asyncio.run(_with_backends(execute))
    logger.info("run %s ended %s", parsed.task_id, status)
    return status


@shared_task(name="conduit.generation.name_conversation", base=OutboxTask, bind=True)
def name_conversation(self: OutboxTask, conversation_id: str) -> str | None:
    """Name a new conversation from its first question (idempotent: only a default name)."""
    from conduit.db.models import App, Conversation
    from conduit.services.runs import model_ref

    found = resources()
    with found.db.sessions() as session:
        conversation = session.get(Conversation, conversation_id)
        app = session.get(App, conversation.app_id) if conversation else None
        if app is None:
            return None
        ref = model_ref(app, found.settings, session=session)

    async def work() -> str | None:
        models = _models()
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
