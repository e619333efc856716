"""An app's annotations and its annotation reply (Dify's `/v1/apps/annotations` and
`/v1/apps/annotation-reply/{action}`).

An annotation is a question and the answer the app's builder wants given to it. With the reply
on (an `enable` job, which embeds every annotated question with the model it names, then
writes the setting into the app's `model_config["annotation_reply"]`), a chat whose query is at
least `score_threshold` close (cosine) to an annotated question is answered with that
annotation's answer, and the model is not asked (`AnnotationSearch`, on the run's executor);
a chatflow's turn so answered does not run its workflow. A `disable` job switches it off and
drops the vectors.

The setting belongs to the jobs: an app's edit or import never changes it
(`services/apps.py:kept_reply`). An annotation written or edited while the reply is on is
embedded by a task of its own (`INDEX_TASK`), so that a chat finds it a moment later; until
then it is not matched. Jobs and their tasks are outbox rows on the `dataset` queue: none is
lost, and a job redelivered after its worker died is done again (it is idempotent).
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import numpy as np
from sqlalchemy import Connection, Float, Table, bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from conduit.core.apps.annotations import AnnotationHit, AnnotationPlan
from conduit.core.rag.embed.base import Embedder
from conduit.db.models import (
    Account,
    AnnotationHitHistory,
    AnnotationJob,
    App,
    AppMode,
    EndUser,
    Message,
    MessageAnnotation,
    utcnow,
)
from conduit.db.models.base import UTCDateTime
from conduit.errors import ConduitError, Conflict, InvalidParam, NotChatApp, NotFound
from conduit.infra.db import Database
from conduit.infra.outbox import enqueue
from conduit.services._like import contains
from conduit.services.app_logs import CONSOLE_USER_PREFIX
from conduit.services.datasets.embedders import Embedders, check_choice
from conduit.services.end_users import BROWSER
from conduit.signals import app_was_updated, send_after_commit

logger = logging.getLogger(__name__)

QUEUE = "dataset"
REPLY_TASK = "conduit.dataset.annotation_reply"
INDEX_TASK = "conduit.dataset.index_annotations"
ACTIONS = ("enable", "disable")
# The apps whose annotations answer: chat apps and chatflows (whose turn is then answered
# without running the workflow).
REPLY_MODES = (AppMode.CHAT, AppMode.AGENT_CHAT, AppMode.ADVANCED_CHAT)
TEXT_LIMIT = 65_535  # characters of a question or an answer
EMBED_BATCH = 64
_UNFINISHED = ("waiting", "processing")
_ANNOTATIONS = cast(Table, MessageAnnotation.__table__)
_HITS = cast(Table, AnnotationHitHistory.__table__)
_MESSAGES = cast(Table, Message.__table__)
# An unfinished job older than this is taken as abandoned: a new request starts another.
JOB_ABANDONED_AFTER = timedelta(minutes=15)


class AnnotationNotFound(NotFound):
    default_message = "Annotation not found."


class AnnotationJobNotFound(NotFound):
    default_message = "The job does not exist."


def view(annotation: MessageAnnotation) -> dict[str, Any]:
    return {
        "id": annotation.id,
        "question": annotation.question,
        "answer": annotation.answer,
        "hit_count": annotation.hit_count,
        "created_at": int(annotation.created_at.timestamp()),
    }


def _chat_app(app: App) -> None:
    if app.mode not in REPLY_MODES:
        raise NotChatApp()


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidParam(f"{name} is required: a non-empty string")
    if len(value) > TEXT_LIMIT:
        raise InvalidParam(f"{name} is longer than {TEXT_LIMIT} characters")
    return value


def reply_setting(app: App) -> dict[str, Any] | None:
    """The app's annotation reply when it is on (`model_config["annotation_reply"]`)."""
    setting = (app.model_config_ or {}).get("annotation_reply")
    if isinstance(setting, dict) and setting.get("enabled") is True:
        return setting
    return None


def _readable(session: Session, app: App, annotation_id: str) -> MessageAnnotation:
    annotation = session.get(MessageAnnotation, annotation_id)
    if annotation is None or annotation.app_id != app.id:
        raise AnnotationNotFound()
    return annotation


def list_annotations(
    session: Session, app: App, *, page: int, limit: int, keyword: str | None
) -> tuple[list[MessageAnnotation], int]:
    """One page of the app's annotations, newest first; `keyword` in the question or the
    answer (case ignored). Returns (items, total)."""
    _chat_app(app)
    where = [MessageAnnotation.app_id == app.id]
    if keyword:
        where.append(
            or_(
                contains(MessageAnnotation.question, keyword),
                contains(MessageAnnotation.answer, keyword),
            )
        )
    total = session.scalar(select(func.count()).select_from(MessageAnnotation).where(*where)) or 0
    items = session.scalars(
        select(MessageAnnotation)
        .where(*where)
        .order_by(MessageAnnotation.created_at.desc(), MessageAnnotation.id)
        .offset((page - 1) * limit)
        .limit(limit)
    ).all()
    return list(items), total


def _index_later(session: Session, app: App) -> None:
    if reply_setting(app) is not None:
        enqueue(session, INDEX_TASK, queue=QUEUE, kwargs={"app_id": app.id})


def create_annotation(
    session: Session, app: App, body: dict[str, Any], *, account_id: str | None
) -> MessageAnnotation:
    """A new annotation from `{question, answer}`, written by `account_id` (the app's creator
    when it comes with the app's key). With a `message_id` (the console's "annotate this
    answer"): the annotation of that message of the app, its question the message's query
    unless one is given, made or changed."""
    _chat_app(app)
    message_id = body.get("message_id")
    if message_id is not None:
        return _annotate_message(session, app, message_id, body, account_id=account_id)
    return _add(
        session,
        app,
        question=_text(body, "question"),
        answer=_text(body, "answer"),
        account_id=account_id,
    )


def _add(
    session: Session,
    app: App,
    *,
    question: str,
    answer: str,
    account_id: str | None,
    message: Message | None = None,
) -> MessageAnnotation:
    annotation = MessageAnnotation(
        app_id=app.id,
        message_id=message.id if message else None,
        conversation_id=message.conversation_id if message else None,
        question=question,
        answer=answer,
        hit_count=0,
        account_id=account_id or app.created_by,
    )
    session.add(annotation)
    session.flush()
    _index_later(session, app)
    return annotation


def _annotate_message(
    session: Session, app: App, message_id: Any, body: dict[str, Any], *, account_id: str | None
) -> MessageAnnotation:
    message = session.get(Message, message_id) if isinstance(message_id, str) else None
    if message is None or message.app_id != app.id:
        raise NotFound("Message Not Exists.")
    answer = _text(body, "answer")
    question = _text(body, "question") if body.get("question") is not None else message.query
    if not question.strip():
        raise InvalidParam("question is required: the message has no query")
    annotation = session.scalars(
        select(MessageAnnotation).where(
            MessageAnnotation.app_id == app.id, MessageAnnotation.message_id == message.id
        )
    ).first()
    if annotation is not None:
        return update_annotation(
            session, app, annotation.id, {"question": question, "answer": answer}
        )
    return _add(
        session, app, question=question, answer=answer, account_id=account_id, message=message
    )


def count_annotations(session: Session, app: App) -> int:
    _chat_app(app)
    count = session.scalar(
        select(func.count())
        .select_from(MessageAnnotation)
        .where(MessageAnnotation.app_id == app.id)
    )
    return int(count or 0)


def setting_view(app: App) -> dict[str, Any]:
    """Dify's console `annotation-setting`: `{"enabled": false}`, or the setting that is on."""
    setting = reply_setting(app)
    if setting is None:
        return {"enabled": False}
    return {
        "id": setting.get("id"),
        "enabled": True,
        "score_threshold": setting.get("score_threshold"),
        "embedding_model": setting.get("embedding_model") or {},
    }


def update_annotation(
    session: Session, app: App, annotation_id: str, body: dict[str, Any]
) -> MessageAnnotation:
    """Both the question and the answer, as Dify asks; a changed question loses its vector
    (embedded again when the reply is on)."""
    _chat_app(app)
    question, answer = _text(body, "question"), _text(body, "answer")
    annotation = _readable(session, app, annotation_id)
    if question != annotation.question:
        annotation.question = question
        annotation.vector = None
        annotation.embedding_model_key = None
        _index_later(session, app)
    annotation.answer = answer
    annotation.updated_at = utcnow()
    session.flush()
    return annotation


def delete_annotation(session: Session, app: App, annotation_id: str) -> None:
    _chat_app(app)
    session.delete(_readable(session, app, annotation_id))
    session.flush()


def start_job(session: Session, app: App, action: str, body: dict[str, Any]) -> dict[str, Any]:
    """Queue an `enable` (with `score_threshold`, `embedding_provider_name` and
    `embedding_model_name`, checked now) or a `disable` of the app's annotation reply. While
    one of the app's jobs is unfinished, that job is the answer (as in Dify)."""
    if action not in ACTIONS:
        raise InvalidParam(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
    if app.mode not in REPLY_MODES:
        raise NotChatApp("Annotation reply is offered to chat apps only.")
    fields: dict[str, Any] = {}
    if action == "enable":
        threshold = body.get("score_threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise InvalidParam("score_threshold is required: a number from 0 to 1")
        if not 0 <= threshold <= 1:
            raise InvalidParam(f"score_threshold must be from 0 to 1, not {threshold}")
        for name in ("embedding_provider_name", "embedding_model_name"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise InvalidParam(f"{name} is required: a non-empty string")
        chosen = check_choice(
            session, app.tenant_id, body["embedding_provider_name"], body["embedding_model_name"]
        )
        assert chosen is not None  # both were given
        fields = {
            "score_threshold": float(threshold),
            "embedding_provider": chosen[0],
            "embedding_model": chosen[1],
        }
    running = session.scalars(
        select(AnnotationJob)
        .where(AnnotationJob.app_id == app.id, AnnotationJob.status.in_(_UNFINISHED))
        .order_by(AnnotationJob.created_at.desc())
        .limit(1)
    ).first()
    if running is not None and running.created_at > utcnow() - JOB_ABANDONED_AFTER:
        if running.action != action:
            raise Conflict(
                f"An {running.action} job of this app's annotation reply is not finished yet "
                f"(job_id {running.id}): wait for it, then ask again."
            )
        return {"job_id": running.id, "job_status": running.status}
    if running is not None:
        # Its task never ended (it failed before the job could record why): not a reason
        # for the app's reply to stay stuck.
        _end_job(
            session,
            running.id,
            "error",
            f"The job did not end within {JOB_ABANDONED_AFTER}; a new one was started.",
        )
    job = AnnotationJob(app_id=app.id, action=action, status="waiting", **fields)
    session.add(job)
    session.flush()
    enqueue(session, REPLY_TASK, queue=QUEUE, kwargs={"job_id": job.id})
    return {"job_id": job.id, "job_status": job.status}


def job_view(session: Session, app: App, action: str, job_id: str) -> dict[str, Any]:
    if action not in ACTIONS:
        raise InvalidParam(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
    job = session.get(AnnotationJob, job_id)
    if job is None or job.app_id != app.id or job.action != action:
        raise AnnotationJobNotFound()
    return {"job_id": job.id, "job_status": job.status, "error_msg": job.error or ""}


# Dify's `source` of a hit, from the end user of the message it answered.
def _source(user_type: str | None, session_id: str | None) -> str:
    if user_type == BROWSER:
        return "web-app"
    if (session_id or "").startswith(CONSOLE_USER_PREFIX):
        return "debugger"
    return "service-api"


def hit_histories(
    session: Session, app: App, annotation_id: str, *, page: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of the annotation's hits, newest first (Dify's `hit-histories`: `question`
    the message's, `match` and `response` the annotation's question and answer then)."""
    _chat_app(app)
    annotation = _readable(session, app, annotation_id)
    where = AnnotationHitHistory.annotation_id == annotation.id
    total = session.scalar(select(func.count()).select_from(AnnotationHitHistory).where(where))
    rows = session.execute(
        select(AnnotationHitHistory, EndUser.type, EndUser.session_id)
        .outerjoin(Message, Message.id == AnnotationHitHistory.message_id)
        .outerjoin(EndUser, EndUser.id == Message.end_user_id)
        .where(where)
        .order_by(AnnotationHitHistory.created_at.desc(), AnnotationHitHistory.id)
        .offset((page - 1) * limit)
        .limit(limit)
    )
    items = [
        {
            "id": hit.id,
            "source": _source(user_type, session_id),
            "score": hit.score,
            "question": hit.question,
            "match": hit.annotation_question,
            "response": hit.annotation_content,
            "created_at": int(hit.created_at.timestamp()),
        }
        for hit, user_type, session_id in rows
    ]
    return items, int(total or 0)


def export_annotations(session: Session, app: App) -> list[dict[str, Any]]:
    """Every annotation of the app, newest first, as the list shows them."""
    _chat_app(app)
    rows = session.scalars(
        select(MessageAnnotation)
        .where(MessageAnnotation.app_id == app.id)
        .order_by(MessageAnnotation.created_at.desc(), MessageAnnotation.id)
    )
    return [view(annotation) for annotation in rows]


IMPORT_MAX_ROWS = 1000  # annotations in one imported file
IMPORT_MAX_BYTES = 4 * 1024 * 1024  # the file's size
# A cell the export wrote as text (one `'` more before what a spreadsheet would take for a
# formula, after any apostrophes of its own).
_FORMULA_START = ("=", "+", "-", "@")


def _cell(row: list[str], at: int, number: int) -> str:
    text = row[at].strip() if at < len(row) else ""
    if text.startswith("'") and text.lstrip("'")[:1] in _FORMULA_START:
        text = text[1:]
    if "\x00" in text:
        raise InvalidParam(f"Row {number} of the CSV file holds a NUL character.")
    if len(text) > TEXT_LIMIT:
        raise InvalidParam(
            f"Row {number} of the CSV file: a question or an answer holds at most "
            f"{TEXT_LIMIT} characters, not {len(text)}."
        )
    return text


def import_annotations(
    session: Session, app: App, filename: str, data: bytes, *, account_id: str | None
) -> dict[str, Any]:
    """Annotations from a CSV file (Dify's batch import: the first row is the header, then a
    question and its answer per row): every row checked, then all written with a `completed`
    import job in the caller's transaction, or none (400 naming the row). Embedded by the
    index task when the reply is on."""
    _chat_app(app)
    if not filename.lower().endswith(".csv"):
        raise InvalidParam(f"The file must be a CSV file (.csv), not {filename or 'unnamed'!r}.")
    if len(data) > IMPORT_MAX_BYTES:
        raise InvalidParam(
            f"The CSV file is {len(data)} bytes; at most {IMPORT_MAX_BYTES} bytes per file."
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidParam("The CSV file must be UTF-8 text.") from None
    pairs: list[tuple[str, str]] = []
    # `strict`: an unterminated quote is an error, not the rest of the file in one cell.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    began = 1  # the line where the record being read begins (a quoted cell may span lines)
    try:
        next(reader, None)  # the header
        began = reader.line_num + 1
        # Rows as a spreadsheet numbers them: a record is one row, whatever lines it spans.
        for number, row in enumerate(reader, start=2):
            began = reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue  # a blank line
            question, answer = _cell(row, 0, number), _cell(row, 1, number)
            if not question or not answer:
                raise InvalidParam(
                    f"Row {number} of the CSV file needs a question and an answer "
                    "(the first two columns, both non-empty)."
                )
            if any(cell.strip() for cell in row[2:]):
                raise InvalidParam(
                    f"Row {number} of the CSV file has more than two columns: quote a question "
                    'or an answer that holds a comma ("like, this").'
                )
            pairs.append((question, answer))
            if len(pairs) > IMPORT_MAX_ROWS:
                raise InvalidParam(f"The CSV file has more than {IMPORT_MAX_ROWS} annotations.")
    except csv.Error as error:
        raise InvalidParam(
            f"The CSV file could not be read in the record that begins at line {began}: {error}"
        ) from None
    if not pairs:
        raise InvalidParam(
            "The CSV file has no annotations: after its header row, each row is a question "
            "and its answer."
        )
    now = utcnow()
    session.add_all(
        MessageAnnotation(
            app_id=app.id,
            question=question,
            answer=answer,
            hit_count=0,
            account_id=account_id or app.created_by,
            created_at=now,
            updated_at=now,
        )
        for question, answer in pairs
    )
    job = AnnotationJob(
        app_id=app.id, action="import", status="completed", record_count=len(pairs),
        finished_at=now,
    )  # fmt: skip
    session.add(job)
    session.flush()
    _index_later(session, app)
    return {"job_id": job.id, "job_status": job.status, "record_count": len(pairs)}


def import_view(session: Session, app: App, job_id: str) -> dict[str, Any]:
    job = session.get(AnnotationJob, job_id)
    if job is None or job.app_id != app.id or job.action != "import":
        raise AnnotationJobNotFound()
    return {"job_id": job.id, "job_status": job.status, "error_msg": job.error or ""}


# The jobs (on the `dataset` queue's worker threads).


def _write_vectors(db: Database, embedder: Embedder, app_id: str) -> int:
    """Embed every annotated question of the app that lacks a vector of `embedder`, a batch at
    a time; a question edited meanwhile keeps no stale vector (it is read again). Returns how
    many were embedded."""
    key, done = embedder.model_key, 0
    stale = or_(
        MessageAnnotation.vector.is_(None),
        MessageAnnotation.embedding_model_key.is_(None),
        MessageAnnotation.embedding_model_key != key,
    )
    while True:
        with db.reads() as session:
            batch = session.execute(
                select(MessageAnnotation.id, MessageAnnotation.question)
                .where(MessageAnnotation.app_id == app_id, stale)
                .order_by(MessageAnnotation.id)
                .limit(EMBED_BATCH)
            ).all()
        if not batch:
            return done
        vectors = embedder.embed([question for _, question in batch]).vectors
        with db.transaction() as session:
            for (annotation_id, question), vector in zip(batch, vectors, strict=True):
                session.execute(
                    update(MessageAnnotation)
                    .where(
                        MessageAnnotation.id == annotation_id,
                        MessageAnnotation.question == question,
                    )
                    .values(
                        vector=np.asarray(vector, dtype=np.float32).tobytes(),
                        embedding_model_key=key,
                    )
                )
        done += len(batch)


def _embedder(
    session: Session, embedders: Embedders, app: App, setting: dict[str, Any]
) -> Embedder:
    model = setting.get("embedding_model") or {}
    return embedders.for_model(
        session,
        app.tenant_id,
        model.get("embedding_provider_name"),
        model.get("embedding_model_name"),
        owner="annotation reply",
        remedy="or enable the annotation reply on another model",
    )


def run_job(db: Database, embedders: Embedders, job_id: str) -> str:
    """Do one enable or disable job; its end (`completed` or `error` with the reason) is on its
    row. A finished job is not done again (a redelivery)."""
    with db.transaction() as session:
        job = session.get(AnnotationJob, job_id)
        if job is None or job.status not in _UNFINISHED:
            return "skipped"
        job.status = "processing"
        action, app_id = job.action, job.app_id
        setting = {
            "id": job.id,
            "enabled": True,
            "score_threshold": job.score_threshold,
            "embedding_model": {
                "embedding_provider_name": job.embedding_provider,
                "embedding_model_name": job.embedding_model,
            },
        }
    try:
        if action == "enable":
            with db.reads() as session:
                app = session.get(App, app_id)
                embedder = _embedder(session, embedders, app, setting) if app else None
            if embedder is not None:
                _write_vectors(db, embedder, app_id)
        with db.transaction() as session:
            # Only a job still `processing` ends: one given up as abandoned meanwhile (and
            # perhaps followed by another) changes nothing.
            if not _end_job(session, job_id, "completed", only_from="processing"):
                return "abandoned"
            app = session.get(App, app_id, with_for_update=True, populate_existing=True)
            if app is not None:
                _set_reply(session, app, setting if action == "enable" else {"enabled": False})
                if action == "disable":
                    session.execute(
                        update(MessageAnnotation)
                        .where(MessageAnnotation.app_id == app_id)
                        .values(vector=None, embedding_model_key=None)
                    )
                else:
                    # Any annotation written while the cached app still said "off" queued no
                    # task of its own: embedded now (it is idempotent).
                    enqueue(session, INDEX_TASK, queue=QUEUE, kwargs={"app_id": app_id})
        return "completed"
    except Exception as error:
        reason = error.message if isinstance(error, ConduitError) else str(error) or repr(error)
        logger.warning("annotation reply job %s failed: %s", job_id, reason)
        with db.transaction() as session:
            _end_job(session, job_id, "error", reason, only_from="processing")
        return "error"


def _end_job(
    session: Session,
    job_id: str,
    status: str,
    error: str | None = None,
    *,
    only_from: str | None = None,
) -> bool:
    """End the job as `status` (if it is still `only_from`); whether it did."""
    statement = update(AnnotationJob).where(AnnotationJob.id == job_id)
    if only_from is not None:
        statement = statement.where(AnnotationJob.status == only_from)
    ended = session.execute(statement.values(status=status, error=error, finished_at=utcnow()))
    return bool(getattr(ended, "rowcount", 0))


def _set_reply(session: Session, app: App, setting: dict[str, Any]) -> None:
    app.model_config_ = {**(app.model_config_ or {}), "annotation_reply": setting}
    app.updated_at = utcnow()
    session.flush()
    send_after_commit(session, app_was_updated, app)


def index_annotations(db: Database, embedders: Embedders, app_id: str) -> int:
    """Embed the app's annotations that lack a vector, while its reply is on."""
    with db.reads() as session:
        app = session.get(App, app_id)
        setting = reply_setting(app) if app is not None else None
        if app is None or setting is None:
            return 0
        embedder = _embedder(session, embedders, app, setting)
    return _write_vectors(db, embedder, app_id)


_COUNT_HIT = (
    update(_ANNOTATIONS)
    .where(_ANNOTATIONS.c.id == bindparam("annotation_id"))
    # (`updated_at` kept: it versions the search's kept vectors, which a hit does not change)
    .values(hit_count=_ANNOTATIONS.c.hit_count + 1, updated_at=_ANNOTATIONS.c.updated_at)
)
# The hit's history row: the message's question, the annotation as it is now.
_RECORD_HIT = insert(_HITS).from_select(
    [
        "id",
        "app_id",
        "annotation_id",
        "message_id",
        "question",
        "score",
        "annotation_question",
        "annotation_content",
        "created_at",
    ],
    select(
        bindparam("hit_id"),
        _MESSAGES.c.app_id,
        _ANNOTATIONS.c.id,
        _MESSAGES.c.id,
        _MESSAGES.c.query,
        bindparam("score", type_=Float),
        _ANNOTATIONS.c.question,
        _ANNOTATIONS.c.answer,
        bindparam("now", type_=UTCDateTime(timezone=True)),
    )
    .select_from(_MESSAGES.join(_ANNOTATIONS, _ANNOTATIONS.c.app_id == _MESSAGES.c.app_id))
    .where(
        _MESSAGES.c.id == bindparam("message_id"),
        _ANNOTATIONS.c.id == bindparam("annotation_id"),
    ),
)


def count_hit(connection: Connection, annotation_id: str, message_id: str, score: float) -> None:
    """The annotation answered the message: its `hit_count` + 1 and a row of its hit history
    (in the run's end's transaction, which only the run's first end reaches)."""
    params = {"annotation_id": annotation_id}
    connection.execute(_COUNT_HIT, params)
    connection.execute(
        _RECORD_HIT,
        {
            **params,
            "hit_id": str(uuid.uuid4()),
            "message_id": message_id,
            "score": round(float(score), 6),
            "now": utcnow(),
        },
    )


# The search (on a run's executor).


def annotation_plan(app: App, query: str) -> AnnotationPlan | None:
    """What a chat run compares its query with, when its app's reply is on."""
    setting = reply_setting(app) if app.mode in REPLY_MODES else None
    if setting is None or not query.strip():
        return None
    model = setting.get("embedding_model") or {}
    return AnnotationPlan(
        tenant_id=app.tenant_id,
        app_id=app.id,
        query=query,
        score_threshold=float(setting.get("score_threshold") or 0.0),
        embedding_provider=str(model.get("embedding_provider_name") or ""),
        embedding_model=str(model.get("embedding_model_name") or ""),
    )


_Vectors = tuple[tuple[Any, ...], list[str], Any]  # (version, ids, matrix)


@dataclass
class AnnotationSearch:
    """`core/apps/annotations.py:MatchAnnotation`: the query embedded by the plan's model and
    compared with every annotated question of the app that has a vector of that model; the
    closest at or above the threshold answers. In a session that only reads, on a thread.

    An app's vectors are kept in memory as one matrix (for `cached_apps` apps, the least
    recently used dropped first) while their version holds: how many there are and their
    latest change, one indexed aggregate per run instead of reading every vector."""

    db: Database
    embedders: Embedders
    cached_apps: int = 64
    timeout: float = 10.0
    _vectors: OrderedDict[tuple[str, str], _Vectors] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def __call__(self, plan: AnnotationPlan) -> AnnotationHit | None:
        # A slow embedding model delays the answer by `timeout` at most: then the model
        # answers (the run's `_annotated` logs why).
        return await asyncio.wait_for(asyncio.to_thread(self.match, plan), self.timeout)

    def match(self, plan: AnnotationPlan) -> AnnotationHit | None:
        with self.db.reads() as session:
            embedder = self.embedders.for_model(
                session,
                plan.tenant_id,
                plan.embedding_provider,
                plan.embedding_model,
                owner="annotation reply",
                remedy="or enable the annotation reply on another model",
            )
            ids, matrix = self._app_vectors(session, plan.app_id, embedder.model_key)
        if not ids:
            return None
        # Outside the session: a remote model's answer holds no pooled connection.
        query = embedder.embed([plan.query]).vectors[0]
        best, score = _closest(query, ids, matrix)
        if best is None or score < plan.score_threshold:
            return None
        with self.db.reads() as session:
            found = session.execute(
                select(MessageAnnotation.answer, MessageAnnotation.account_id, Account.name)
                .outerjoin(Account, Account.id == MessageAnnotation.account_id)
                .where(MessageAnnotation.id == best)
            ).first()
            if found is None:
                return None  # deleted meanwhile
            return AnnotationHit(
                id=best,
                answer=found.answer,
                score=score,
                account_id=found.account_id,
                account_name=found.name,
            )

    def _app_vectors(self, session: Session, app_id: str, key: str) -> tuple[list[str], Any]:
        """The app's annotation ids and their vectors of model `key` (one row each)."""
        of_app = (
            MessageAnnotation.app_id == app_id,
            MessageAnnotation.embedding_model_key == key,
            MessageAnnotation.vector.is_not(None),
        )
        version = tuple(
            session.execute(
                select(func.count(), func.max(MessageAnnotation.updated_at)).where(*of_app)
            ).one()
        )
        with self._lock:
            held = self._vectors.get((app_id, key))
            if held is not None and held[0] == version:
                self._vectors.move_to_end((app_id, key))
                return held[1], held[2]
        rows = session.execute(
            select(MessageAnnotation.id, MessageAnnotation.vector).where(*of_app)
        ).all()
        ids, matrix = _matrix((row.id, row.vector) for row in rows)
        with self._lock:
            self._vectors[(app_id, key)] = (version, ids, matrix)
            self._vectors.move_to_end((app_id, key))
            while len(self._vectors) > self.cached_apps:
                self._vectors.popitem(last=False)
        return ids, matrix


def _matrix(vectors: Iterable[tuple[str, bytes | None]]) -> tuple[list[str], Any]:
    """The ids and a matrix of their vectors (those of the first vector's length)."""
    ids: list[str] = []
    rows: list[Any] = []
    for annotation_id, raw in vectors:
        vector = np.frombuffer(raw or b"", dtype=np.float32)
        if vector.size and (not rows or vector.shape == rows[0].shape):
            ids.append(annotation_id)
            rows.append(vector)
    return ids, (np.stack(rows) if rows else None)


def _closest(query: Any, ids: list[str], matrix: Any) -> tuple[str | None, float]:
    if not ids or matrix is None or matrix.shape[1] != query.shape[0]:
        return None, 0.0
    scores = matrix @ np.asarray(query, dtype=np.float32)
    at = int(np.argmax(scores))
    return ids[at], float(scores[at])
