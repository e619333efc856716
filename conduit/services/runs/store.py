"""The only home of run SQL: a chat or completion run's finish (its message's guarded UPDATE
and its conversation's turn count; one self-committing statement on PostgreSQL), its lease
renewal (with the checkpoint of its answer so far), and the ending of runs whose executor is
gone.

Core statements, no ORM Session, on the path of every run: the ORM's unit of work cost about
0.3 ms of CPU per finish.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    exists,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from conduit.core.apps.chat import ChatResult
from conduit.core.llm.usage import ModelPrices, usage_payload
from conduit.core.runs.spec import RunSpec
from conduit.core.runs.status import RunStatus, sources_of, transition
from conduit.db.models import App, AsyncTask, Message, utcnow
from conduit.errors import RunInterrupted
from conduit.infra.db import Database
from conduit.services import app_annotations, conversations
from conduit.services.runs import task_store, tasks
from conduit.signals import message_was_created, send_isolated

logger = logging.getLogger(__name__)

_MESSAGES = cast(Table, Message.__table__)
_APPS = cast(Table, App.__table__)
_TASKS = cast(Table, AsyncTask.__table__)


def model_prices(prices: dict[str, str] | None) -> ModelPrices | None:
    """Prices per 1K tokens from an app's `model.prices` strings; None when unset or
    malformed."""
    if prices is None:
        return None
    try:
        return ModelPrices.per_1k(
            str(prices.get("prompt", "0")),
            str(prices.get("completion", "0")),
            currency=str(prices.get("currency", "USD")),
        )
    except ArithmeticError:  # decimal.InvalidOperation: a malformed price is "unpriced"
        return None


def usage_metadata(result: ChatResult, prices: ModelPrices | None = None) -> dict[str, Any]:
    metadata = {
        "usage": usage_payload(result.usage, result.latency, prices),
        "retriever_resources": result.retriever_resources,
    }
    if result.annotation_reply is not None:
        metadata["annotation_reply"] = result.annotation_reply
    return metadata


_RESULT_COLUMNS = (
    "status", "answer", "error", "message_tokens", "answer_tokens", "total_price", "currency",
    "provider_response_latency", "message_metadata", "agent_thoughts", "finished_at",
    "updated_at",
)  # fmt: skip


@functools.cache
def _finish_statement(new: RunStatus) -> Update:
    """The guarded UPDATE that ends a run as `new`, built once: executed with its parameters,
    a Core statement skips the ORM's bulk-update machinery and SQL compilation per run. The
    values are `new_<column>`: a parameter named like a column would also be SET by any other
    UPDATE of the statement that has such a column (the turn count's, on PostgreSQL)."""
    guard = [_MESSAGES.c.status == source.value for source in sources_of(new)]
    return (
        update(_MESSAGES)
        .where(_MESSAGES.c.id == bindparam("message_id"), or_(*guard))
        .values({name: bindparam(f"new_{name}") for name in _RESULT_COLUMNS})
        .returning(
            _MESSAGES.c.app_id,
            _MESSAGES.c.conversation_id,
            _MESSAGES.c.end_user_id,
            _MESSAGES.c.model_provider,
            _MESSAGES.c.model_id,
        )
    )


@functools.cache
def _finish_and_count_statement(new: RunStatus) -> Select[Any]:
    """PostgreSQL: `_finish_statement` and its conversation's turn count as one statement
    (data-modifying CTEs; the count's UPDATE finds the conversation in the message's
    RETURNING row, and counts nothing when the guard refused the message's)."""
    finished = _finish_statement(new).cte("finished")
    counted = conversations.turn_counted(finished.c.conversation_id, bindparam("new_finished_at"))
    return select(finished).add_cte(counted)


def _kept_metadata(metadata: dict[str, Any], result: ChatResult) -> dict[str, Any]:
    """What the message keeps of its run's end: the metadata its `message_end` reports and,
    for a run that failed, its error's code and status (its message is the `error` column),
    so that its answer can be given again once its events have expired
    (`core/apps/chat.py:stored_events`)."""
    if result.error_code is None:
        return metadata
    return {**metadata, "error": {"code": result.error_code, "status": result.error_status}}


def record_result(
    connection: Connection, result: ChatResult, prices: ModelPrices | None
) -> tuple[dict[str, Any], Message | None]:
    """Write a finished run onto its message: one guarded UPDATE (the status may change only as
    the transition table allows) and its conversation's turn count, in the caller's transaction;
    on PostgreSQL both in one statement, which commits by itself on an autocommit connection
    (`Database.statements`). Returns the metadata and the message as written (detached), for
    `message-was-created` once the caller has committed; None when the message is gone (its
    app was deleted)."""
    metadata = usage_metadata(result, prices)
    usage = metadata["usage"]
    finished = utcnow()
    one_statement = connection.dialect.name == "postgresql"
    statement = (
        _finish_and_count_statement(result.status)
        if one_statement
        else _finish_statement(result.status)
    )
    written = connection.execute(
        statement,
        {
            "message_id": result.message_id,
            "new_status": result.status.value,
            "new_answer": result.answer,
            "new_error": result.error_message,
            "new_message_tokens": result.usage.prompt_tokens,
            "new_answer_tokens": result.usage.completion_tokens,
            "new_total_price": Decimal(str(usage["total_price"])),
            "new_currency": str(usage["currency"]),
            "new_provider_response_latency": result.latency,
            "new_message_metadata": _kept_metadata(metadata, result),
            "new_agent_thoughts": result.agent_thoughts,
            "new_finished_at": finished,
            "new_updated_at": finished,
        },
    ).first()
    if written is None:
        status = connection.execute(
            select(_MESSAGES.c.status).where(_MESSAGES.c.id == result.message_id)
        ).scalar()
        if status is None:
            return metadata, None  # the app (and its messages) was deleted meanwhile
        transition(status, result.status)  # raises InvalidTransition, naming both statuses
        return metadata, None
    if written.conversation_id is not None and not one_statement:
        conversations.count_turn(connection, written.conversation_id, finished)
    if result.annotation_reply is not None:
        app_annotations.count_hit(
            connection, result.annotation_reply["id"], result.message_id, result.annotation_score
        )
    # The signal's sender: the message as written, detached (handlers must not lazy-load).
    message = Message(
        id=result.message_id,
        app_id=written.app_id,
        conversation_id=written.conversation_id,
        end_user_id=written.end_user_id,
        model_provider=written.model_provider,
        model_id=written.model_id,
        status=result.status.value,
        answer=result.answer,
        message_tokens=result.usage.prompt_tokens,
        answer_tokens=result.usage.completion_tokens,
        total_price=Decimal(str(usage["total_price"])),
        currency=str(usage["currency"]),
        message_metadata=metadata,
        finished_at=finished,
    )
    return metadata, message


_CLAIM = (
    update(_MESSAGES)
    .where(
        _MESSAGES.c.id == bindparam("message_id"),
        _MESSAGES.c.status == RunStatus.RUNNING.value,
        or_(
            _MESSAGES.c.renewed_at.is_(None),
            _MESSAGES.c.renewed_at < bindparam("lapsed_before"),
        ),
    )
    .values(renewed_at=bindparam("now"))
)

# One statement renews many runs' leases, each with its checkpoint or none (then its answer
# stays), and returns the ids of those still running: the rows come as one JSON array of
# [message id, answer or null] (PostgreSQL: json_to_recordset; SQLite: json_each).
_RENEW_MANY = {
    "postgresql": """
        UPDATE messages SET renewed_at = :now, answer = COALESCE(due.answer, messages.answer)
        FROM json_to_recordset(CAST(:runs AS json)) AS due(id text, answer text)
        WHERE messages.id = due.id AND messages.status = 'running'
        RETURNING messages.id""",
    "sqlite": """
        UPDATE messages SET renewed_at = :now, answer = COALESCE(due.answer, messages.answer)
        FROM (
            SELECT value ->> '$.id' AS id, value ->> '$.answer' AS answer
            FROM json_each(:runs)
        ) AS due
        WHERE messages.id = due.id AND messages.status = 'running'
        RETURNING messages.id""",
}


def renew_leases(connection: Connection, checkpoints: dict[str, str | None]) -> set[str]:
    """The runs are alive: each message's `renewed_at` is its run's lease; its answer so far
    (a checkpoint), when not None, is stored with it. Returns the ids of the messages renewed:
    the others no longer run (they ended, or were taken over)."""
    if not checkpoints:
        return set()
    statement = text(_RENEW_MANY[connection.dialect.name]).bindparams(
        bindparam("now", type_=_MESSAGES.c.renewed_at.type)
    )
    runs = json.dumps([{"id": key, "answer": answer} for key, answer in checkpoints.items()])
    found = connection.execute(statement, {"now": utcnow(), "runs": runs})
    return {str(message_id) for (message_id,) in found}


def claim_lease(connection: Connection, message_id: str, lease_seconds: float) -> bool:
    """Take the run for an executor that is about to start it: only while it is `running`
    and no live executor holds it (never renewed, or its lease lapsed). False otherwise: it
    ended, or another delivery of it is running."""
    now = utcnow()
    found = connection.execute(
        _CLAIM,
        {
            "message_id": message_id,
            "now": now,
            "lapsed_before": now - timedelta(seconds=lease_seconds),
        },
    )
    return bool(getattr(found, "rowcount", 0))


class MessageStore:
    """The `ChatStore` of chat and completion runs, on the app database (each write on a
    thread, off the event loop). `message-was-created` goes out after the commit."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def finish(self, result: ChatResult) -> dict[str, Any]:
        return await asyncio.to_thread(self._finish, result)

    def _finish(self, result: ChatResult) -> dict[str, Any]:
        if result.asynchronous or result.annotation_reply is not None:
            metadata, written = self._finish_in_transaction(result)
        else:
            # On PostgreSQL one self-committing statement: one round trip, where BEGIN, two
            # UPDATEs and COMMIT took four, each a wait for the GIL in this thread.
            with self._db.statements() as connection:
                metadata, written = record_result(connection, result, model_prices(result.prices))
        if written is not None:
            send_isolated(message_was_created, written, status=result.status.value)
        return metadata

    def _finish_in_transaction(self, result: ChatResult) -> tuple[dict[str, Any], Message | None]:
        """In one transaction: an async run's end and its task's (with its callback); an
        annotated answer's end and its hit (the count and the history row)."""
        with self._db.transaction() as session:
            found = record_result(session.connection(), result, model_prices(result.prices))
            if found[1] is not None and result.asynchronous:
                tasks.end_run_task(
                    session,
                    result.task_id,
                    result.status.value,
                    error_code=result.error_code,
                    error_message=result.error_message,
                )
        return found

    async def renew_many(self, runs: Sequence[tuple[RunSpec, str | None]]) -> set[str]:
        by_message = {spec.body.message_id: spec.task_id for spec, _ in runs}
        checkpoints = {spec.body.message_id: checkpoint for spec, checkpoint in runs}
        renewed = await asyncio.to_thread(self.renew_now, checkpoints)
        return {task_id for message, task_id in by_message.items() if message not in renewed}

    def renew_now(self, checkpoints: dict[str, str | None]) -> set[str]:
        """Renew the runs of these messages (with their checkpoints); the ids renewed."""
        with self._db.statements() as connection:
            return renew_leases(connection, checkpoints)

    async def claim(self, spec: RunSpec, lease_seconds: float) -> bool:
        task_id = spec.task_id if spec.asynchronous else None
        return await asyncio.to_thread(
            self.claim_now, spec.body.message_id, lease_seconds, task_id=task_id
        )

    def claim_now(
        self, message_id: str, lease_seconds: float, *, task_id: str | None = None
    ) -> bool:
        """Claim the run of `message_id`; an async run's task (`task_id`) is `running` with it."""
        with self._db.statements() as connection:
            claimed = claim_lease(connection, message_id, lease_seconds)
            if claimed and task_id is not None:
                task_store.start_task(connection, task_id)
            return claimed


INTERRUPTED = RunInterrupted.default_message


@dataclass(frozen=True)
class LapsedRun:
    """A `running` run whose executor is gone, as its message row has it."""

    message_id: str
    task_id: str | None
    app_id: str
    mode: str
    conversation_id: str | None
    created_at: datetime
    renewed_at: datetime | None
    answer: str
    lease_lapsed_before: datetime
    never_renewed_before: datetime
    async_never_renewed_before: datetime


def lapsed_runs(
    connection: Connection,
    *,
    lease_lapsed_before: datetime,
    never_renewed_before: datetime,
    async_never_renewed_before: datetime,
    limit: int = 100,
) -> list[LapsedRun]:
    """The runs whose lease lapsed before `lease_lapsed_before`, or that were never renewed
    and were created before `never_renewed_before` — `async_never_renewed_before` for an
    async run, which may wait on its queue as long as it may run (on the partial index of
    running ones)."""
    bounds = (lease_lapsed_before, never_renewed_before, async_never_renewed_before)
    rows = connection.execute(
        select(
            _MESSAGES.c.id,
            _MESSAGES.c.task_id,
            _MESSAGES.c.app_id,
            _APPS.c.mode,
            _MESSAGES.c.conversation_id,
            _MESSAGES.c.created_at,
            _MESSAGES.c.renewed_at,
            _MESSAGES.c.answer,
        )
        .join(_APPS, _APPS.c.id == _MESSAGES.c.app_id)
        .where(_lapsed(*bounds))
        .limit(limit)
    )
    return [LapsedRun(*row, *bounds) for row in rows]


def _lapsed(
    lease_lapsed_before: datetime,
    never_renewed_before: datetime,
    async_never_renewed_before: datetime,
) -> Any:
    is_async = exists().where(_TASKS.c.id == _MESSAGES.c.task_id)
    return and_(
        _MESSAGES.c.status == RunStatus.RUNNING.value,
        or_(
            _MESSAGES.c.renewed_at < lease_lapsed_before,
            and_(
                _MESSAGES.c.renewed_at.is_(None),
                _MESSAGES.c.created_at < never_renewed_before,
                or_(_MESSAGES.c.created_at < async_never_renewed_before, ~is_async),
            ),
        ),
    )


def end_lapsed_run(
    connection: Connection,
    run: LapsedRun,
    answer: str,
    thoughts: list[dict[str, Any]] | None = None,
) -> bool:
    """End `run` as failed (interrupted) with `answer` (and an agent's rounds so far, when
    its log had them), unless it was renewed since it was read (its executor lives after
    all) or another taker ended it first."""
    now = utcnow()
    kept = {"agent_thoughts": thoughts} if thoughts else {}
    found = connection.execute(
        update(_MESSAGES)
        .where(
            _MESSAGES.c.id == run.message_id,
            # Still lapsed: a renewal made since it was read wins.
            _lapsed(
                run.lease_lapsed_before, run.never_renewed_before, run.async_never_renewed_before
            ),
        )
        .values(
            status=RunStatus.FAILED.value,
            error=INTERRUPTED,
            answer=answer,
            finished_at=now,
            updated_at=now,
            **kept,
        )
    )
    return bool(getattr(found, "rowcount", 0))


def end_runs(session: Session) -> int:
    """End every `running` run as failed, keeping its last checkpoint (`renew_lease`), and
    the tasks of the async ones."""
    now = utcnow()
    for task_id in task_store.unfinished_task_ids(session.connection()):
        tasks.end_run_task(
            session,
            task_id,
            RunStatus.FAILED.value,
            error_code=RunInterrupted.code,
            error_message=INTERRUPTED,
        )
    result = session.execute(
        update(Message)
        .where(Message.status == RunStatus.RUNNING.value)
        .values(status=RunStatus.FAILED.value, error=INTERRUPTED, finished_at=now)
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    if count:
        logger.warning("ended %d run(s) left running by a stopped process", count)
    return count
