"""The planner of chat and completion runs: validate the request, read what the run needs
(its conversation's history, its provider and that provider's quota), decide its rows and its
spec, and write them.

Every run of these apps has a conversation: a chat continues one or starts one (named by a
task); a completion message gets a conversation of its own, as in Dify.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from conduit.core.apps.agent import agent_plan
from conduit.core.apps.chat import ChatMode, ChatRunBody, StoredChat, stored_events
from conduit.core.apps.knowledge import RetrievalPlan, reranking
from conduit.core.llm.provider import ChatMessage
from conduit.core.runs.kinds import Event
from conduit.core.runs.spec import RunSpec
from conduit.core.runs.status import RunStatus
from conduit.db.models import App, AppMode, Conversation, EndUser, Message
from conduit.errors import AppUnavailable, ConversationCompleted, InvalidParam, NotChatApp
from conduit.infra.cache import Cache
from conduit.infra.outbox import enqueue
from conduit.infra.settings import Settings
from conduit.services import app_annotations, conversations, model_providers, prompts, run_files
from conduit.services.apps import config_dataset_ids
from conduit.services.runs import task_store
from conduit.services.runs.start import KeyedRun, RunIds, RunKey, owner_of

CHAT_MODES = (AppMode.CHAT, AppMode.AGENT_CHAT)
NAME_TASK = "conduit.generation.name_conversation"


@dataclass
class ChatRequest:
    """A chat or completion request as the API received it (already type-checked)."""

    mode: ChatMode  # the route it came in on
    inputs: Any
    query: str
    response_mode: str  # "blocking" | "streaming" | "async"
    conversation_id: str | None = None
    auto_generate_name: bool = True
    files: list[Any] = field(default_factory=list)
    # An async run's callback (checked against SSRF as the request was read).
    callback_url: str | None = None
    draft: bool = False  # a chatflow's turn in the console's debugger: its draft workflow
    workflow_id: str | None = None  # a chatflow's published version (None: the latest)


def app_provider(app: App) -> Any:
    """The app's `model.provider` as configured (None when unset)."""
    model = (app.model_config_ or {}).get("model")
    return model.get("provider") if isinstance(model, dict) else None


def model_ref(
    app: App, settings: Settings, *, session: Session | None = None, cache: Cache | None = None
) -> dict[str, Any]:
    """Which provider serves this app: its own `model.provider` (a workspace provider is
    referred to by id: the executor reads and decrypts its key), else the workspace's default
    provider (looked up when a `session` is given; `cache` remembers a workspace without one),
    else the server default."""
    provider = app_provider(app)
    workspace = model_providers.app_model_ref(session, app, provider, cache)
    if workspace is not None:
        return workspace
    if provider in (None, "", "default"):
        provider = "openai_api_compatible" if settings.model.base_url else "local"
    return {"provider": provider}


def raw_prices(model_config: dict[str, Any]) -> dict[str, str] | None:
    """The app's `model.prices` ({"prompt", "completion", "currency"}) as strings, if set."""
    model = model_config.get("model")
    prices = model.get("prices") if isinstance(model, dict) else None
    if not isinstance(prices, dict):
        return None
    return {str(k): str(v) for k, v in prices.items()}


_MESSAGES = cast(Table, Message.__table__)
_INSERT_MESSAGE = insert(_MESSAGES)


@dataclass(frozen=True)
class ChatPlan:
    """What a chat or completion run's start writes: its spec, and the message's inputs and
    conversation (`new_conversation`: created with it)."""

    spec: RunSpec
    ids: RunIds
    inputs: dict[str, Any]
    end_user: EndUser
    query: str
    new_conversation: bool
    name_conversation: bool
    # The inline executor starts the run with its commit: its lease starts with its row, so
    # that a server killed before the first renewal is seen. A queued run's starts when a
    # worker claims it.
    leased: bool = False
    callback_url: str | None = None

    def write(self, session: Session, app: App, key: RunKey | None = None) -> None:
        write_run(session, app, self, key)


def plan_run(
    session: Session,
    *,
    app: App,
    end_user: EndUser,
    request: ChatRequest,
    settings: Settings,
    task_id: str,
    ids: RunIds | None = None,
    cache: Cache | None = None,
) -> ChatPlan:
    """Validate, read what the run needs (its conversation and history, its provider and that
    provider's quota) and decide its rows; nothing is written (`write_run` does). `ids`
    (message id, new conversation id, creation time) may be decided beforehand; `cache`
    spares the default provider's query for a workspace known to have none."""
    ids = ids or RunIds.new()
    config = app.model_config_ or {}
    check_app_mode(app, request)
    ref = model_ref(app, settings, session=session, cache=cache)
    model_providers.check_quota(session, ref)
    conversation_id = ids.new_conversation_id
    new_conversation = True
    past: list[dict[str, Any]] = []  # the files of the turns the prompt remembers
    if request.mode == "chat":
        turns: list[Message] = []
        if request.conversation_id:
            conversation = conversations.get_conversation(
                session, app, end_user, request.conversation_id
            )
            if conversation.status != "normal":
                raise ConversationCompleted()
            inputs = dict(conversation.inputs or {})  # Dify keeps the conversation's own inputs
            turns = conversation_turns(
                session, conversation, prompts.memory_turns(config, settings.runs.memory_turns)
            )
            conversation_id = conversation.id
            new_conversation = False
        else:
            inputs = prompts.validate_inputs(config, request.inputs)
        messages = prompts.chat_prompt(
            config, inputs, [(m.query, m.answer) for m in turns], request.query
        )
        if turns:
            past = run_files.past_files(session, app, [m.id for m in turns], messages)
    else:
        inputs = prompts.validate_inputs(config, request.inputs)
        messages = prompts.completion_prompt(config, inputs, request.query)
    files = [*past, *run_files.checked_files(session, app, request.files)]
    spec = _spec(
        app,
        request,
        settings,
        task_id=task_id,
        ids=ids,
        conversation_id=conversation_id,
        owner=owner_of(end_user),
        messages=messages,
        ref=ref,
        inputs=inputs,
        files=files,
    )
    return ChatPlan(
        spec=spec,
        ids=ids,
        inputs=inputs,
        end_user=end_user,
        query=request.query,
        new_conversation=new_conversation,
        name_conversation=(
            new_conversation and request.mode == "chat" and request.auto_generate_name
        ),
        leased=settings.runs.executor == "inline" and not spec.asynchronous,
        callback_url=request.callback_url,
    )


def write_run(session: Session, app: App, planned: ChatPlan, key: RunKey | None = None) -> None:
    """Write a planned run: its new conversation (and the naming task) or its conversation's
    activity, its message (`running`, with the request's Idempotency-Key if any) and, for an
    async run, its task. Writes only, whose results are not read: they can go to the database
    together with the commit (`commit_together`); the caller commits."""
    spec, ids = planned.spec, planned.ids
    body: ChatRunBody = spec.body
    if planned.new_conversation:
        conversations.create_conversation(
            session,
            app,
            planned.end_user,
            inputs=planned.inputs,
            conversation_id=ids.new_conversation_id,
        )
        if planned.name_conversation:
            enqueue(
                session,
                NAME_TASK,
                # Its own queue and pool: a model call off the run's path never takes a
                # generation worker from a run.
                queue="background",
                kwargs={"conversation_id": ids.new_conversation_id},
            )
    else:
        assert body.conversation_id is not None
        conversations.touch_conversation(session, body.conversation_id)
    # A Core INSERT (no ORM object to flush): it is on the path of every run.
    session.connection().execute(
        _INSERT_MESSAGE,
        {
            "id": ids.message_id,
            "created_at": ids.created_at,
            "updated_at": ids.created_at,
            "app_id": app.id,
            "conversation_id": body.conversation_id,
            "task_id": spec.task_id,
            "end_user_id": planned.end_user.id,
            "from_source": "api",
            "inputs": planned.inputs,
            "query": planned.query,
            "status": RunStatus.RUNNING.value,
            "renewed_at": ids.created_at if planned.leased else None,
            "model_provider": body.model_ref["provider"],
            "model_id": body.params.model,
            "idempotency_key": key.key if key else None,
            "request_hash": key.request_hash if key else None,
        },
    )
    run_files.write_message_files(session, ids.message_id, body.files, ids.created_at)
    if spec.asynchronous:
        task_store.write_task(
            session,
            spec,
            end_user_id=planned.end_user.id,
            record_id=ids.message_id,
            callback_url=planned.callback_url,
            created_at=ids.created_at,
        )


def check_app_mode(app: App, request: ChatRequest) -> None:
    """The app must be of the route's kind (Dify's errors otherwise)."""
    if request.mode == "chat":
        if app.mode not in CHAT_MODES:
            raise NotChatApp()  # (a chatflow app's turns are planned by `chatflow.py`)
        if app.mode == AppMode.AGENT_CHAT and request.response_mode == "blocking":
            raise InvalidParam("Agent Chat App does not support blocking mode")
    elif app.mode != AppMode.COMPLETION:
        raise AppUnavailable()


def _spec(
    app: App,
    request: ChatRequest,
    settings: Settings,
    *,
    task_id: str,
    ids: RunIds,
    conversation_id: str,
    owner: str,
    messages: list[ChatMessage],
    ref: dict[str, Any],
    inputs: dict[str, Any],
    files: list[dict[str, Any]] | None = None,
) -> RunSpec:
    config = app.model_config_ or {}
    return RunSpec(
        task_id=task_id,
        kind=request.mode,
        app_id=app.id,
        tenant_id=app.tenant_id,
        owner=owner,
        created_at=int(ids.created_at.timestamp()),
        body=ChatRunBody(
            mode=request.mode,
            message_id=ids.message_id,
            conversation_id=conversation_id,
            messages=messages,
            params=prompts.generation_params(
                config, ref.get("default_model") or settings.model.name
            ),
            model_ref=ref,
            prices=raw_prices(config),
            retrieval=retrieval_plan(app, request.mode, inputs, request.query),
            files=files or [],
            annotation=(
                app_annotations.annotation_plan(app, request.query)
                if request.mode == "chat"
                else None
            ),
            # The local model has no function calling: its agent writes ReAct.
            agent=(
                agent_plan(config, function_calling=ref["provider"] != "local")
                if app.mode == AppMode.AGENT_CHAT
                else None
            ),
        ),
        asynchronous=is_async(request),
    )


# Passages kept when the app's `dataset_configs` sets no `top_k` (Dify's default).
DEFAULT_TOP_K = 4


def retrieval_plan(
    app: App, mode: ChatMode, inputs: dict[str, Any], query: str
) -> RetrievalPlan | None:
    """What the run searches, from the app's `dataset_configs` (its enabled datasets, `top_k`,
    the score threshold when enabled) and `retriever_resource.enabled`; None for an app
    without datasets, or with nothing to search for. A chat searches with its query; a
    completion with the input its `dataset_query_variable` names (else its query). The
    app's metadata filter applies in its `manual` mode (Dify's `automatic` mode, where a model
    writes the filter, is not offered).
    Dify's `retrieval_model: single` (a model picks one dataset) is searched as `multiple`:
    every dataset, best passages over all of them, ordered together by the app's rerank model
    or weighted score when it sets one (`reranking_mode`)."""
    config = app.model_config_ or {}
    dataset_ids = config_dataset_ids(config)
    if not dataset_ids:
        return None
    if mode == "completion" and config.get("dataset_query_variable"):
        query = str(inputs.get(str(config["dataset_query_variable"])) or "")
    if not query.strip():
        return None
    found = config.get("dataset_configs") or {}
    threshold = found.get("score_threshold") if found.get("score_threshold_enabled") else None
    shown = config.get("retriever_resource")
    conditions = found.get("metadata_filtering_conditions")
    manual = found.get("metadata_filtering_mode") == "manual" and isinstance(conditions, dict)
    return RetrievalPlan(
        tenant_id=app.tenant_id,
        dataset_ids=tuple(dataset_ids),
        query=query,
        top_k=int(found.get("top_k") or DEFAULT_TOP_K),
        score_threshold=None if threshold is None else float(threshold),
        show_resources=not isinstance(shown, dict) or shown.get("enabled", True) is not False,
        metadata_conditions=conditions if manual else None,
        reranking=reranking(found),
    )


def early_spec(
    app: App,
    request: ChatRequest,
    settings: Settings,
    *,
    task_id: str,
    ids: RunIds,
    without_default_provider: bool,
) -> RunSpec | None:
    """The run's spec before its transaction, when nothing in it comes from the database: a new
    chat or a completion, on a server provider (one the app names, or the server default for a
    workspace known to have no default provider of its own). The same functions as in
    `plan_run` build it from the same request and app, and the ids are decided beforehand,
    so it is the spec the transaction writes, but for `owner` (the end user's id, left empty:
    the runner does not use it). None when the run needs the database first (a conversation's
    history, a workspace provider's quota)."""
    if (request.mode == "chat" and request.conversation_id) or request.files:
        return None  # (files: checked against the app's uploads)
    provider = app_provider(app)
    if provider in model_providers.DEFAULT_PROVIDERS:
        if not without_default_provider:
            return None
    elif provider not in model_providers.SERVER_PROVIDERS:
        return None
    check_app_mode(app, request)
    config = app.model_config_ or {}
    inputs = prompts.validate_inputs(config, request.inputs)
    if request.mode == "chat":
        messages = prompts.chat_prompt(config, inputs, [], request.query)
    else:
        messages = prompts.completion_prompt(config, inputs, request.query)
    return _spec(
        app,
        request,
        settings,
        task_id=task_id,
        ids=ids,
        conversation_id=ids.new_conversation_id,
        owner="",
        messages=messages,
        ref=model_ref(app, settings),
        inputs=inputs,
    )


def conversation_history(
    session: Session, conversation: Conversation, turns: int
) -> list[tuple[str, str]]:
    return [(m.query, m.answer) for m in conversation_turns(session, conversation, turns)]


def conversation_turns(session: Session, conversation: Conversation, turns: int) -> list[Message]:
    """The conversation's last `turns` answered messages, oldest first."""
    if turns <= 0:
        return []
    rows = session.scalars(
        select(Message)
        .where(
            Message.conversation_id == conversation.id,
            Message.status.in_([RunStatus.SUCCEEDED.value, RunStatus.STOPPED.value]),
            Message.answer != "",
        )
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(turns)
    )
    return list(reversed(list(rows)))


def run_names(spec: RunSpec) -> dict[str, str]:
    """A chat or completion run's names beside its task id: its message, and a chat's
    conversation (a completion's stays off the wire, as in its events)."""
    body: ChatRunBody = spec.body
    if body.mode == "chat" and body.conversation_id:
        return {"message_id": body.message_id, "conversation_id": body.conversation_id}
    return {"message_id": body.message_id}


def is_async(request: ChatRequest) -> bool:
    return request.response_mode == "async"


def fingerprint(request: ChatRequest) -> dict[str, Any]:
    """The fields that define a chat or completion run (`response_mode` does not: it is how
    the run is answered)."""
    fields = {
        "mode": request.mode,
        "inputs": request.inputs,
        "query": request.query,
        "conversation_id": request.conversation_id,
        "auto_generate_name": request.auto_generate_name,
        "files": request.files,
    }
    if request.callback_url is not None:
        # Only when given: the hashes of the keyed runs stored before callbacks existed hold.
        fields["callback_url"] = request.callback_url
    return fields


_KEYED = select(
    Message.task_id, Message.request_hash, Message.id, Message.conversation_id
).join(EndUser, EndUser.id == Message.end_user_id)  # fmt: skip


def _mode(app: App) -> ChatMode:
    return "completion" if app.mode == AppMode.COMPLETION else "chat"


def keyed_run(
    session: Session, *, app: App, user: str, user_type: str, key: str
) -> KeyedRun | None:
    """The message `user` (of `user_type`) of `app` started under Idempotency-Key `key` (the
    unique index's columns), as a KeyedRun."""
    found = session.execute(
        _KEYED.where(
            Message.app_id == app.id,
            Message.idempotency_key == key,
            EndUser.app_id == app.id,
            EndUser.type == user_type,
            EndUser.session_id == user,
        )
    ).first()
    if found is None or found.task_id is None:
        return None
    names = {"message_id": found.id}
    if _mode(app) == "chat" and found.conversation_id:
        names["conversation_id"] = found.conversation_id
    return KeyedRun(task_id=found.task_id, request_hash=found.request_hash or "", names=names)


def stored_run_events(session: Session, *, app: App, run: KeyedRun) -> list[Event] | None:
    """The run's events rebuilt from its message (`core/apps/chat.py:stored_events`); None
    while it is still running."""
    return message_events(app, session.get(Message, run.names["message_id"]), run.task_id)


def message_events(app: App, message: Message | None, task_id: str) -> list[Event] | None:
    """`stored_run_events` of a message already read (None: gone, or still running)."""
    if message is None or message.app_id != app.id:
        return None
    status = RunStatus(message.status)
    if not status.finished:
        return None
    return stored_events(
        StoredChat(
            task_id=task_id,
            mode=_mode(app),
            message_id=message.id,
            conversation_id=message.conversation_id,
            created_at=int(message.created_at.timestamp()),
            status=status,
            answer=message.answer,
            metadata=dict(message.message_metadata or {}),
            error_message=message.error,
            agent_thoughts=(
                list(message.agent_thoughts or []) if app.mode == AppMode.AGENT_CHAT else None
            ),
        )
    )


class ChatPlanner:
    """`services/runs/start.py`'s planner of chat and completion runs."""

    def meta(self, app: App, request: ChatRequest, ids: RunIds) -> dict[str, str]:
        conversation_id = ""
        if request.mode == "chat":
            conversation_id = request.conversation_id or ids.new_conversation_id
        return {
            "mode": request.mode,
            "message_id": ids.message_id,
            "conversation_id": conversation_id,
            "created_at": str(int(ids.created_at.timestamp())),
        }

    def uses_default_provider(self, app: App) -> bool:
        return app_provider(app) in model_providers.DEFAULT_PROVIDERS

    # The start's two questions (`services/runs/start.py:Planner`): the spec ahead of the
    # transaction when nothing in it comes from the database, and the plan in it.
    plan_ahead = staticmethod(early_spec)
    plan = staticmethod(plan_run)
    asynchronous = staticmethod(is_async)
    # What a request with an Idempotency-Key needs.
    fingerprint = staticmethod(fingerprint)
    check = staticmethod(check_app_mode)
    names = staticmethod(run_names)
    keyed_run = staticmethod(keyed_run)
    stored_events = staticmethod(stored_run_events)
