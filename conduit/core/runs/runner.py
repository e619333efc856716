"""The runner of a chat or completion run: stream the model into the EventLog, honour stop,
persist the result itself. The HTTP consumer never writes; a client that goes away loses nothing.

Event order (Dify's): `message` × N, then `message_end`; or `error` (a failure). The result is
persisted through `RunStore.finish()` *before* the terminal event is appended, so whoever sees
`message_end` can read the stored message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from conduit.core.llm.errors import ModelError
from conduit.core.llm.provider import (
    ChatMessage,
    ChatModel,
    Delta,
    Finished,
    GenerationParams,
    Usage,
)
from conduit.core.runs.eventlog.base import EventLog
from conduit.core.runs.status import RunStatus, transition
from conduit.core.runs.stop import StopRegistry
from conduit.errors import ConduitError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    """Everything a runner needs, serialisable (the Celery executor sends it as JSON)."""

    task_id: str
    app_id: str
    tenant_id: str
    mode: str  # "chat" | "completion" (the event envelope differs)
    message_id: str
    conversation_id: str | None
    created_at: int
    owner: str
    messages: list[ChatMessage]
    params: GenerationParams
    model_ref: dict[str, Any]  # how to find the model (resolved by the executor's ModelResolver)
    # The app's `model.prices` when the run started ({"prompt", "completion", "currency"}).
    prices: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "app_id": self.app_id,
            "tenant_id": self.tenant_id,
            "mode": self.mode,
            "message_id": self.message_id,
            "conversation_id": self.conversation_id,
            "created_at": self.created_at,
            "owner": self.owner,
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            "params": {
                "model": self.params.model,
                "temperature": self.params.temperature,
                "top_p": self.params.top_p,
                "max_tokens": self.params.max_tokens,
                "stop": list(self.params.stop),
            },
            "model_ref": self.model_ref,
            "prices": self.prices,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunSpec:
        params = data["params"]
        return cls(
            task_id=data["task_id"],
            app_id=data["app_id"],
            tenant_id=data["tenant_id"],
            mode=data["mode"],
            message_id=data["message_id"],
            conversation_id=data.get("conversation_id"),
            created_at=int(data["created_at"]),
            owner=data["owner"],
            messages=[ChatMessage(role=m["role"], content=m["content"]) for m in data["messages"]],
            params=GenerationParams(
                model=params["model"],
                temperature=params.get("temperature"),
                top_p=params.get("top_p"),
                max_tokens=params.get("max_tokens"),
                stop=tuple(params.get("stop") or ()),
            ),
            model_ref=dict(data.get("model_ref") or {}),
            prices=data.get("prices"),
        )


@dataclass
class RunResult:
    task_id: str
    message_id: str
    status: RunStatus
    answer: str
    usage: Usage = field(default_factory=Usage)
    latency: float = 0.0
    error_code: str | None = None
    error_message: str | None = None
    provider: str | None = None


class RunStore(Protocol):
    """Where a finished run is written (provided by the services layer)."""

    async def finish(self, result: RunResult) -> dict[str, Any]:
        """Persist the result; returns the `metadata` object of `message_end` (usage…)."""


ModelResolver = Callable[[dict[str, Any]], Awaitable[ChatModel]]


def envelope(spec: RunSpec, event: str, **fields: Any) -> dict[str, Any]:
    """Dify's full-converter envelope: chat events carry conversation_id, completion's do not."""
    payload: dict[str, Any] = {"event": event}
    if spec.mode != "completion":
        payload["conversation_id"] = spec.conversation_id
    payload["message_id"] = spec.message_id
    payload["created_at"] = spec.created_at
    payload.update(fields)
    return payload


def message_head(spec: RunSpec) -> bytes:
    """The JSON of the run's `message` events up to their `answer`'s value: every delta's
    event is this, the delta as a JSON string, and `}` (see `message_data`), so that the
    envelope's fixed fields are serialised once per run instead of once per token."""
    whole = orjson.dumps(
        envelope(spec, "message", task_id=spec.task_id, id=spec.message_id, answer="")
    )
    return whole[: -len(b'""}')]


def message_data(head: bytes, text: str) -> bytes:
    """The JSON object of the `message` event of one delta (`head` from `message_head`)."""
    return head + orjson.dumps(text) + b"}"


class RunStopped(Exception):
    """Raised inside the runner when the owner asked to stop."""


@dataclass
class EarlyStart:
    """The gates of a run started before its start has finished, so that its model call
    overlaps the rest of the start: `created` (its event log exists; awaited before the run's
    first write to it) and `committed` (its rows exist; awaited before its result is stored).
    Each resolves True once so, or False if it failed (the run is then cancelled)."""

    created: asyncio.Future[bool]
    committed: asyncio.Future[bool]

    @classmethod
    def new(cls) -> EarlyStart:
        loop = asyncio.get_running_loop()
        return cls(created=loop.create_future(), committed=loop.create_future())

    def fail(self) -> None:
        """The start failed: whatever has not passed its gate never will."""
        for gate in (self.created, self.committed):
            if not gate.done():
                gate.set_result(False)


async def _passed(gate: asyncio.Future[bool] | None) -> bool:
    return True if gate is None else await asyncio.shield(gate)


async def execute_run(
    spec: RunSpec,
    *,
    model: ChatModel,
    log: EventLog,
    stops: StopRegistry,
    store: RunStore,
    log_created: asyncio.Future[bool] | None = None,
) -> RunResult:
    """Run one generation to its end; never raises (the outcome is in the result and the log).
    `log_created`: see `EarlyStart` (a run whose log is being created as its model is called).
    """
    status = transition(RunStatus.PENDING, RunStatus.RUNNING)
    answer: list[str] = []
    usage = Usage()
    started = time.perf_counter()
    error: ConduitError | None = None

    async def generate() -> Usage:
        final = Usage()
        head = message_head(spec)
        writable = log_created is None
        async for item in model.stream_chat(spec.messages, spec.params):
            if isinstance(item, Delta):
                pieces = [piece for piece in item.parts if piece]
                if not pieces:
                    continue
                if not writable:
                    writable = await _passed(log_created)
                    if not writable:
                        return final  # no log to write to: the start failed, the run is cancelled
                answer.extend(pieces)
                # One event per piece; the pieces of one read of the upstream in one go.
                await log.extend(
                    spec.task_id, "message", [message_data(head, piece) for piece in pieces]
                )
            elif isinstance(item, Finished):
                final = item.usage
        return final

    generation = asyncio.ensure_future(generate())
    stop_watch = asyncio.ensure_future(stops.wait_for_stop(spec.task_id))
    try:
        done, _ = await asyncio.wait({generation, stop_watch}, return_when=asyncio.FIRST_COMPLETED)
        if generation in done:
            usage = generation.result()
            status = transition(status, RunStatus.SUCCEEDED)
        else:
            generation.cancel()  # closes the upstream stream / stops local generation
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await generation
            status = transition(status, RunStatus.STOPPED)
    except ModelError as failure:
        error = failure
        status = transition(status, RunStatus.FAILED)
    except asyncio.CancelledError:
        # The process is shutting down (drain timeout): end the run as stopped, keep the answer.
        generation.cancel()
        status = transition(status, RunStatus.STOPPED)
        await _finish(spec, log, store, status, answer, usage, started, None, model, log_created)
        raise
    except Exception as failure:
        logger.exception("run %s failed unexpectedly", spec.task_id)
        error = ConduitError("Internal Server Error, please contact support.")
        error.__cause__ = failure
        status = transition(status, RunStatus.FAILED)
    finally:
        stop_watch.cancel()
    return await _finish(
        spec, log, store, status, answer, usage, started, error, model, log_created
    )


async def fail_before_start(
    spec: RunSpec,
    error: ConduitError,
    *,
    log: EventLog,
    store: RunStore,
    log_created: asyncio.Future[bool] | None = None,
) -> RunResult:
    """End a run that could not start (e.g. no model available): stored failed, `error` event."""

    class _Unresolved:
        provider_name = str(spec.model_ref.get("provider") or "unknown")

    return await _finish(
        spec,
        log,
        store,
        RunStatus.FAILED,
        [],
        Usage(),
        time.perf_counter(),
        error,
        _Unresolved(),
        log_created,
    )


async def _finish(
    spec: RunSpec,
    log: EventLog,
    store: RunStore,
    status: RunStatus,
    answer: list[str],
    usage: Usage,
    started: float,
    error: ConduitError | None,
    model: ChatModel | Any,
    log_created: asyncio.Future[bool] | None = None,
) -> RunResult:
    text = "".join(answer)
    if usage.total_tokens == 0 and text:
        # A stopped or broken stream reports no usage: estimate so that records stay useful.
        prompt_chars = sum(len(m.content) for m in spec.messages)
        usage = Usage(
            prompt_tokens=max(1, prompt_chars // 4), completion_tokens=max(1, len(text) // 4)
        )
    result = RunResult(
        task_id=spec.task_id,
        message_id=spec.message_id,
        status=status,
        answer=text,
        usage=usage,
        latency=round(time.perf_counter() - started, 3),
        error_code=error.code if error else None,
        error_message=error.message if error else None,
        provider=model.provider_name,
    )
    metadata: dict[str, Any] = {}
    try:
        metadata = await store.finish(result)
    except Exception:
        logger.exception("run %s: storing the result failed", spec.task_id)
    if not await _passed(log_created):
        return result  # its log never came to exist: nothing to end there
    try:
        if error is None:
            await log.append(
                spec.task_id,
                "message_end",
                envelope(
                    spec, "message_end", task_id=spec.task_id, id=spec.message_id, metadata=metadata
                ),
            )
        else:
            await log.append(
                spec.task_id,
                "error",
                envelope(
                    spec, "error", status=error.status, code=error.code, message=error.message
                ),
            )
    finally:
        await log.close(spec.task_id)
    return result
