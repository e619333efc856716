"""The only home of run SQL: a chat or completion run's finish (its message's guarded UPDATE
and its conversation's turn count; one self-committing statement on PostgreSQL), its lease
renewal, and the ending of runs whose executor is gone.

Core statements, no ORM Session, on the path of every run: the ORM's unit of work cost about
0.3 ms of CPU per finish.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Connection, Select, Table, Update, and_, bindparam, or_, select, update
from sqlalchemy.orm import Session

from conduit.core.apps.chat import ChatResult
from conduit.core.llm.usage import ModelPrices, usage_payload
from conduit.core.runs.spec import RunSpec
from conduit.core.runs.status import RunStatus, sources_of, transition
from conduit.db.models import Message, utcnow
from conduit.infra.db import Database
from conduit.services import conversations
from conduit.signals import message_was_created, send_isolated

logger = logging.getLogger(__name__)

_MESSAGES = cast(Table, Message.__table__)


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
    return {"usage": usage_payload(result.usage, result.latency, prices), "retriever_resources": []}


_RESULT_COLUMNS = (
    "status", "answer", "error", "message_tokens", "answer_tokens", "total_price", "currency",
    "provider_response_latency", "message_metadata", "finished_at", "updated_at",
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
            "new_message_metadata": metadata,
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
        finished_at=finished,
    )
    return metadata, message


_RENEW = (
    update(_MESSAGES)
    .where(
        _MESSAGES.c.id == bindparam("message_id"),
        _MESSAGES.c.status == RunStatus.RUNNING.value,
    )
    .values(renewed_at=bindparam("now"))
)
_CLAIM = _RENEW.where(
    or_(_MESSAGES.c.renewed_at.is_(None), _MESSAGES.c.renewed_at < bindparam("lapsed_before"))
)


def renew_lease(connection: Connection, message_id: str) -> bool:
    """The run is alive: its message's `renewed_at` is its lease. False when the run is no
    longer `running` (it ended, or the reaper ended it)."""
    found = connection.execute(_RENEW, {"message_id": message_id, "now": utcnow()})
    return bool(getattr(found, "rowcount", 0))


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
        # On PostgreSQL one self-committing statement: one round trip, where BEGIN, two
        # UPDATEs and COMMIT took four, each a wait for the GIL in this thread.
        with self._db.statements() as connection:
            metadata, written = record_result(connection, result, model_prices(result.prices))
        if written is not None:
            send_isolated(message_was_created, written, status=result.status.value)
        return metadata

    async def renew(self, spec: RunSpec) -> bool:
        return await asyncio.to_thread(self.renew_now, spec.body.message_id)

    def renew_now(self, message_id: str) -> bool:
        with self._db.statements() as connection:
            return renew_lease(connection, message_id)

    async def claim(self, spec: RunSpec, lease_seconds: float) -> bool:
        return await asyncio.to_thread(self.claim_now, spec.body.message_id, lease_seconds)

    def claim_now(self, message_id: str, lease_seconds: float) -> bool:
        with self._db.statements() as connection:
            return claim_lease(connection, message_id, lease_seconds)


INTERRUPTED = "The run was interrupted: the process running it stopped."


def end_runs(
    session: Session, *, lease_lapsed_before: datetime | None, never_renewed_before: datetime | None
) -> int:
    """End `running` runs as failed, keeping their partial answers: all of them when both
    bounds are None, else those whose lease (`renewed_at`, renewed by a live run) lapsed before
    `lease_lapsed_before`, or that were never renewed and were created before
    `never_renewed_before` (queued, or whose executor died before its first renewal)."""
    query = update(Message).where(Message.status == RunStatus.RUNNING.value)
    if lease_lapsed_before is not None and never_renewed_before is not None:
        query = query.where(
            or_(
                Message.renewed_at < lease_lapsed_before,
                and_(Message.renewed_at.is_(None), Message.created_at < never_renewed_before),
            )
        )
    now = utcnow()
    result = session.execute(
        query.values(status=RunStatus.FAILED.value, error=INTERRUPTED, finished_at=now)
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    if count:
        logger.warning("ended %d run(s) left running by a stopped process", count)
    return count
