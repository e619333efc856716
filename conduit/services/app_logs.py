"""A chat or completion app's logs in the console: its conversations (page by page, with
Dify's filters and fields), one conversation's messages, and the app's daily statistics
(messages, tokens and cost, average latency) over a time range.

Who wrote a message: an end user of the Service API or the web app, or a console account
through the debugger, whose runs belong to the end user `console-<account id>` (the
debugger's user, `console_user`); such a row is shown as the account's, `from_source`
"console", as Dify shows its debugger's rows. Every read is scoped to the signed-in member's
workspace through `apps.get_app` (another workspace's app is a 404).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    exists,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.orm import Session

from conduit.db.models import (
    Account,
    App,
    AppMode,
    Conversation,
    EndUser,
    Membership,
    Message,
    MessageAnnotation,
    MessageFeedback,
    Role,
)
from conduit.errors import InvalidParam, NotChatApp, NotCompletionApp, NotFound
from conduit.services import apps, run_files
from conduit.services._like import contains
from conduit.services.conversations import is_uuid

# The debugger's end user is `console-<account id>` (api/console/app_runs.console_user).
CONSOLE_USER_PREFIX = "console-"
SERVICE_API = "service-api"

CHAT_LOG_MODES = (AppMode.CHAT, AppMode.AGENT_CHAT, AppMode.ADVANCED_CHAT)
SORTS = {
    "created_at": (Conversation.created_at, False),
    "-created_at": (Conversation.created_at, True),
    "updated_at": (Conversation.updated_at, False),
    "-updated_at": (Conversation.updated_at, True),
}
# Dify's time format for `start` / `end` (the date alone is taken too).
TIME_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d")


def console_user(account_id: str) -> str:
    """The debugger's end user of the account `account_id` (Dify's "console" caller)."""
    return f"{CONSOLE_USER_PREFIX}{account_id}"


def parse_time(name: str, raw: str | None, *, end: bool = False) -> datetime | None:
    """`start` / `end` as Dify sends them ("YYYY-MM-DD HH:MM", UTC); a date alone is its
    day's start (or, for an end, the next day's start). 400 naming `name` otherwise."""
    if raw is None or raw == "":
        return None
    for index, layout in enumerate(TIME_FORMATS):
        try:
            moment = datetime.strptime(raw, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
        if end and index == 1:
            moment += timedelta(days=1)
        return moment
    raise InvalidParam(f"{name}: must be a time as YYYY-MM-DD HH:MM (or YYYY-MM-DD), not {raw!r}")


@dataclass(frozen=True)
class TimeRange:
    start: datetime | None = None
    end: datetime | None = None  # exclusive

    def check(self) -> TimeRange:
        if self.start is not None and self.end is not None and self.end < self.start:
            raise InvalidParam("end: must not be before start")
        return self

    def conditions(self, column: Any) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.start is not None:
            found.append(column >= self.start)
        if self.end is not None:
            found.append(column < self.end)
        return found


@dataclass(frozen=True)
class ConversationQuery:
    page: int = 1
    limit: int = 20
    keyword: str | None = None
    times: TimeRange = TimeRange()
    sort_by: str = "-created_at"


def _app(session: Session, member: Membership, app_id: str, modes: Sequence[AppMode]) -> App:
    apps.require_role(member, Role.EDITOR, "read app logs")
    app = apps.get_app(session, member.tenant_id, app_id)
    if app.mode not in modes:
        raise NotCompletionApp() if AppMode.COMPLETION in modes else NotChatApp()
    return app


# --- who wrote it ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Author:
    from_source: str
    from_end_user_id: str | None
    from_end_user_session_id: str | None
    from_account_id: str | None
    from_account_name: str | None

    def fields(self) -> dict[str, Any]:
        return {
            "from_source": self.from_source,
            "from_end_user_id": self.from_end_user_id,
            "from_end_user_session_id": self.from_end_user_session_id,
            "from_account_id": self.from_account_id,
            "from_account_name": self.from_account_name,
        }


def _authors(session: Session, tenant_id: str, end_user_ids: set[str]) -> dict[str, Author]:
    """Each end user as an author: a debugger's end user is its account (if a member of the
    workspace); any other is itself."""
    if not end_user_ids:
        return {}
    users = list(session.scalars(select(EndUser).where(EndUser.id.in_(end_user_ids))))
    wanted = {
        u.session_id.removeprefix(CONSOLE_USER_PREFIX)
        for u in users
        if u.type == SERVICE_API and u.session_id.startswith(CONSOLE_USER_PREFIX)
    }
    accounts: dict[str, str] = {}
    if wanted:
        accounts = {
            account_id: name
            for account_id, name in session.execute(
                select(Account.id, Account.name)
                .join(Membership, Membership.account_id == Account.id)
                .where(Account.id.in_(wanted), Membership.tenant_id == tenant_id)
            )
        }
    found: dict[str, Author] = {}
    for user in users:
        account_id = user.session_id.removeprefix(CONSOLE_USER_PREFIX)
        if user.type == SERVICE_API and user.session_id != account_id and account_id in accounts:
            found[user.id] = Author("console", None, None, account_id, accounts[account_id])
        else:
            found[user.id] = Author("api", user.id, user.session_id, None, None)
    return found


_NOBODY = Author("api", None, None, None, None)


# --- conversations -----------------------------------------------------------------------------


def _conversation_filter(app: App, query: ConversationQuery) -> list[ColumnElement[bool]]:
    conditions = [
        Conversation.app_id == app.id,
        Conversation.is_deleted.is_(False),
        *query.times.conditions(Conversation.created_at),
    ]
    if query.keyword:
        matching_message = exists().where(
            Message.conversation_id == Conversation.id,
            or_(contains(Message.query, query.keyword), contains(Message.answer, query.keyword)),
        )
        matching_user = exists().where(
            EndUser.id == Conversation.end_user_id, contains(EndUser.session_id, query.keyword)
        )
        conditions.append(
            or_(contains(Conversation.name, query.keyword), matching_message, matching_user)
        )
    return conditions


def list_conversations(
    session: Session, *, member: Membership, app_id: str, completion: bool, query: ConversationQuery
) -> tuple[list[dict[str, Any]], int]:
    """One page of the app's conversations matching `query`, and how many match."""
    app = _app(session, member, app_id, (AppMode.COMPLETION,) if completion else CHAT_LOG_MODES)
    if query.sort_by not in SORTS:
        raise InvalidParam(f"sort_by: must be one of {', '.join(SORTS)}")
    conditions = _conversation_filter(app, query)
    total = session.scalar(select(func.count(Conversation.id)).where(*conditions)) or 0
    column, descending = SORTS[query.sort_by]
    order = (column.desc(), Conversation.id.desc()) if descending else (column, Conversation.id)
    rows = list(
        session.scalars(
            select(Conversation)
            .where(*conditions)
            .order_by(*order)
            .offset((query.page - 1) * query.limit)
            .limit(query.limit)
        )
    )
    ids = [row.id for row in rows]
    counts = _message_counts(session, ids)
    feedback = _feedback_stats(session, ids)
    authors = _authors(session, app.tenant_id, {r.end_user_id for r in rows if r.end_user_id})
    firsts = _first_messages(session, ids)
    items = []
    for row in rows:
        item: dict[str, Any] = {
            "id": row.id,
            "status": row.status,
            **authors.get(row.end_user_id or "", _NOBODY).fields(),
            "name": row.name,
            "read_at": None,
            "created_at": int(row.created_at.timestamp()),
            "updated_at": int(row.updated_at.timestamp()),
            "annotated": False,
            "message_count": counts.get(row.id, 0),
            "user_feedback_stats": feedback.get((row.id, "user"), {"like": 0, "dislike": 0}),
            "admin_feedback_stats": feedback.get((row.id, "admin"), {"like": 0, "dislike": 0}),
        }
        if completion:
            first = firsts.get(row.id)
            item["message"] = (
                {"inputs": first.inputs or {}, "query": first.query, "answer": first.answer}
                if first
                else None
            )
        else:
            first = firsts.get(row.id)
            # Dify's `summary_or_query`: no summary is written here, so the first query.
            item["summary"] = first.query if first else ""
        items.append(item)
    return items, int(total)


def _message_counts(session: Session, ids: list[str]) -> dict[str, int]:
    if not ids:
        return {}
    return {
        conversation_id: int(count)
        for conversation_id, count in session.execute(
            select(Message.conversation_id, func.count(Message.id))
            .where(Message.conversation_id.in_(ids))
            .group_by(Message.conversation_id)
        )
        if conversation_id is not None
    }


def _feedback_stats(session: Session, ids: list[str]) -> dict[tuple[str, str], dict[str, int]]:
    found: dict[tuple[str, str], dict[str, int]] = {}
    if not ids:
        return found
    for conversation_id, source, rating, count in session.execute(
        select(
            MessageFeedback.conversation_id,
            MessageFeedback.from_source,
            MessageFeedback.rating,
            func.count(MessageFeedback.id),
        )
        .where(MessageFeedback.conversation_id.in_(ids))
        .group_by(
            MessageFeedback.conversation_id, MessageFeedback.from_source, MessageFeedback.rating
        )
    ):
        stats = found.setdefault((conversation_id or "", source), {"like": 0, "dislike": 0})
        if rating in stats:
            stats[rating] = int(count)
    return found


def _first_messages(session: Session, ids: list[str]) -> dict[str, Message]:
    """Each conversation's first message (its summary, or a completion's whole exchange)."""
    found: dict[str, Message] = {}
    if not ids:
        return found
    firsts = (
        select(Message.conversation_id, func.min(Message.created_at).label("first_at"))
        .where(Message.conversation_id.in_(ids))
        .group_by(Message.conversation_id)
        .subquery()
    )
    for message in session.scalars(
        select(Message)
        .join(
            firsts,
            and_(
                firsts.c.conversation_id == Message.conversation_id,
                firsts.c.first_at == Message.created_at,
            ),
        )
        .order_by(Message.id)
    ):
        assert message.conversation_id is not None
        found.setdefault(message.conversation_id, message)
    return found


# --- one conversation's messages ----------------------------------------------------------------


def list_messages(
    session: Session,
    *,
    member: Membership,
    app_id: str,
    conversation_id: str | None,
    first_id: str | None,
    limit: int,
    link: Callable[[str], str] | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """The conversation's latest `limit` messages (older than `first_id`), oldest first; and
    whether older ones remain. `link`: an upload's signed link, for the messages' files."""
    app = _app(session, member, app_id, CHAT_LOG_MODES)
    if not conversation_id:
        raise InvalidParam("conversation_id: is required")
    if not is_uuid(conversation_id):
        raise InvalidParam("conversation_id: must be a valid UUID")
    found = session.scalar(
        select(Conversation.id).where(
            Conversation.id == conversation_id,
            Conversation.app_id == app.id,
            Conversation.is_deleted.is_(False),
        )
    )
    if found is None:
        raise NotFound("Conversation Not Exists.")
    conditions: list[ColumnElement[bool]] = [
        Message.app_id == app.id,
        Message.conversation_id == conversation_id,
    ]
    if first_id:
        first = (
            session.execute(
                select(Message.created_at, Message.id).where(*conditions, Message.id == first_id)
            ).first()
            if is_uuid(first_id)
            else None
        )
        if first is None:
            raise NotFound("First Message Not Exists.")
        conditions.append(
            or_(
                Message.created_at < first.created_at,
                and_(Message.created_at == first.created_at, Message.id < first.id),
            )
        )
    rows = list(
        session.scalars(
            select(Message)
            .where(*conditions)
            .order_by(Message.created_at.desc(), Message.id.desc())
            .limit(limit + 1)
        )
    )
    page = list(reversed(rows[:limit]))
    feedbacks = _feedbacks(session, [m.id for m in page])
    authors = _authors(session, app.tenant_id, {m.end_user_id for m in page if m.end_user_id})
    files = run_files.message_files(session, [m.id for m in page], link)
    annotated = _annotations(session, app.id, [m.id for m in page])
    return [
        message_detail(
            m,
            feedbacks.get(m.id, []),
            authors.get(m.end_user_id or "", _NOBODY),
            files.get(m.id),
            annotated.get(m.id),
        )
        for m in page
    ], len(rows) > limit


def _annotations(session: Session, app_id: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Dify's `annotation` of each message that has one (made from it in the console)."""
    found: dict[str, dict[str, Any]] = {}
    if ids:
        for row, name, email in session.execute(
            select(MessageAnnotation, Account.name, Account.email)
            .outerjoin(Account, Account.id == MessageAnnotation.account_id)
            .where(MessageAnnotation.app_id == app_id, MessageAnnotation.message_id.in_(ids))
        ):
            found[str(row.message_id)] = {
                "id": row.id,
                "question": row.question,
                "content": row.answer,
                "account": {"id": row.account_id, "name": name, "email": email},
                "created_at": int(row.created_at.timestamp()),
            }
    return found


def _feedbacks(session: Session, ids: list[str]) -> dict[str, list[MessageFeedback]]:
    found: dict[str, list[MessageFeedback]] = {}
    if ids:
        for row in session.scalars(
            select(MessageFeedback)
            .where(MessageFeedback.message_id.in_(ids))
            .order_by(MessageFeedback.created_at)
        ):
            found.setdefault(row.message_id, []).append(row)
    return found


def message_detail(
    message: Message,
    feedbacks: list[MessageFeedback],
    author: Author,
    files: list[dict[str, Any]] | None = None,
    annotation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A message as Dify's console log shows it (`message_detail_fields`)."""
    metadata = message.message_metadata or {}
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "inputs": message.inputs or {},
        "query": message.query,
        "answer": message.answer,
        "status": "error" if message.status == "failed" else message.status,
        "error": message.error,
        "message_tokens": message.message_tokens,
        "answer_tokens": message.answer_tokens,
        "total_tokens": message.message_tokens + message.answer_tokens,
        "provider_response_latency": message.provider_response_latency,
        "total_price": f"{message.total_price:.7f}",
        "currency": message.currency,
        "model_provider": message.model_provider,
        "model_id": message.model_id,
        **author.fields(),
        "feedbacks": [
            {
                "rating": row.rating,
                "content": row.content,
                "from_source": row.from_source,
                "from_end_user_id": row.from_end_user_id,
                "from_account_id": row.from_account_id,
            }
            for row in feedbacks
        ],
        "annotation": annotation,
        "annotation_hit_history": (
            {"annotation_id": metadata["annotation_reply"]["id"]}
            if isinstance(metadata.get("annotation_reply"), dict)
            else None
        ),
        "retriever_resources": metadata.get("retriever_resources") or [],
        "message_files": files or [],
        "agent_thoughts": message.agent_thoughts or [],
        "created_at": int(message.created_at.timestamp()),
    }


# --- statistics --------------------------------------------------------------------------------


def _day(session: Session) -> ColumnElement[Any]:
    """A message's UTC day as "YYYY-MM-DD" (the same text on both dialects)."""
    # Literals, not bound parameters: PostgreSQL matches the GROUP BY to the select's column
    # by its text, and two binds of the same value are two different texts.
    if session.get_bind().dialect.name == "postgresql":
        utc = func.timezone(literal_column("'UTC'"), Message.created_at)
        return func.to_char(utc, literal_column("'YYYY-MM-DD'"), type_=String)
    return func.date(Message.created_at, type_=String)


def _daily(session: Session, app: App, times: TimeRange, *columns: ColumnElement[Any]) -> list[Any]:
    day = _day(session).label("day")
    query: Select[Any] = (
        select(day, *columns)
        .where(Message.app_id == app.id, *times.conditions(Message.created_at))
        .group_by(day)
        .order_by(day)
    )
    return list(session.execute(query))


def statistics(
    session: Session, *, member: Membership, app_id: str, kind: str, times: TimeRange
) -> list[dict[str, Any]]:
    """The app's messages per UTC day: `daily-messages` (count), `token-costs` (tokens and
    price) or `average-response-time` (the provider's latency, in milliseconds)."""
    apps.require_role(member, Role.EDITOR, "read app statistics")
    app = apps.get_app(session, member.tenant_id, app_id)
    times.check()
    if kind == "daily-messages":
        return [
            {"date": row.day, "message_count": int(row.count)}
            for row in _daily(session, app, times, func.count(Message.id).label("count"))
        ]
    if kind == "token-costs":
        rows = _daily(
            session,
            app,
            times,
            func.sum(Message.message_tokens + Message.answer_tokens).label("tokens"),
            func.sum(Message.total_price).label("price"),
            func.max(Message.currency).label("currency"),
        )
        return [
            {
                "date": row.day,
                "token_count": int(row.tokens or 0),
                "total_price": f"{(row.price or 0):.7f}",
                "currency": row.currency or "USD",
            }
            for row in rows
        ]
    assert kind == "average-response-time"
    rows = _daily(
        session,
        app,
        times,
        func.avg(Message.provider_response_latency).label("latency"),
    )
    return [{"date": row.day, "latency": round(float(row.latency or 0) * 1000, 4)} for row in rows]
