"""Chatflow (`advanced-chat`) runs: a turn of a conversation, answered by the app's published
workflow over `POST /v1/chat-messages`.

A turn writes what a chat turn writes (its conversation, new or touched; its message,
`running`, with the request's Idempotency-Key) plus its workflow run (`type` "chat", naming
the message); a new conversation also gets its declared variables (`conversation_variables`
rows, from the workflow's declarations). The run carries the conversation's earlier turns
(memory for LLM nodes) and its variables; at its end the store writes the message's answer
and usage, the run and its node executions, and the variables as the run left them — one
transaction. Idempotency and a repeat's replay are the chat planner's: the message is the
keyed record.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import Connection, Table, insert, select, update
from sqlalchemy.orm import Session

from conduit.core.apps.workflow import ChatTurn, WorkflowRunBody
from conduit.core.runs.spec import RunSpec
from conduit.core.runs.status import RunStatus
from conduit.core.workflow.graph import WorkflowGraph
from conduit.db.models import (
    App,
    AppMode,
    ConversationVariable,
    EndUser,
    Message,
    Workflow,
    WorkflowRun,
    utcnow,
)
from conduit.errors import BadRequest, ConversationCompleted, NotChatApp
from conduit.infra.cache import Cache
from conduit.infra.settings import Settings
from conduit.services import app_annotations, conversations, run_files
from conduit.services.runs import chat
from conduit.services.runs.chat import ChatRequest
from conduit.services.runs.start import RunIds, RunKey
from conduit.services.runs.workflow import (
    check_inputs,
    draft_of,
    model_refs,
    run_spec,
    workflow_for,
)

_MESSAGES = cast(Table, Message.__table__)
_RUNS = cast(Table, WorkflowRun.__table__)
_VARIABLES = cast(Table, ConversationVariable.__table__)
DEFAULT_MEMORY_TURNS = 50  # turns read for memory; each LLM node keeps its own window of them


def declared_variables(workflow: Workflow) -> list[dict[str, Any]]:
    """The workflow's conversation variable declarations ({id, name, value_type, value,
    description})."""
    return [
        dict(item)
        for item in workflow.conversation_variables or ()
        if isinstance(item, Mapping) and item.get("name")
    ]


def conversation_values(session: Session, conversation_id: str) -> dict[str, Any]:
    rows = session.execute(
        select(ConversationVariable.name, ConversationVariable.value).where(
            ConversationVariable.conversation_id == conversation_id
        )
    )
    return {str(name): value for name, value in rows}


def check_chatflow(app: App, request: ChatRequest) -> None:
    if app.mode != AppMode.ADVANCED_CHAT or request.mode != "chat":
        raise NotChatApp()
    if request.response_mode == "async":
        raise BadRequest(
            "response_mode: async runs of chatflow apps are not available yet; use blocking "
            "or streaming"
        )


class ChatflowPlan:
    def __init__(
        self,
        spec: RunSpec,
        ids: RunIds,
        end_user: EndUser,
        workflow: Workflow,
        inputs: dict[str, Any],
        query: str,
        new_conversation: bool,
        leased: bool,
        draft: bool = False,
    ) -> None:
        self.draft = draft
        self.spec = spec
        self.ids = ids
        self.end_user = end_user
        self.workflow = workflow
        self.inputs = inputs
        self.query = query
        self.new_conversation = new_conversation
        self.leased = leased

    def write(self, session: Session, app: App, key: RunKey | None = None) -> None:
        body: WorkflowRunBody = self.spec.body
        turn = body.chat
        assert turn is not None
        connection = session.connection()
        now = self.ids.created_at
        if self.new_conversation:
            conversations.create_conversation(
                session,
                app,
                self.end_user,
                inputs=self.inputs,
                conversation_id=turn.conversation_id,
            )
            declared = declared_variables(self.workflow)
            if declared:
                connection.execute(
                    insert(_VARIABLES),
                    [
                        {
                            "id": str(uuid.uuid4()),
                            "conversation_id": turn.conversation_id,
                            "app_id": app.id,
                            "variable_id": str(item.get("id") or item["name"]),
                            "name": str(item["name"]),
                            "value_type": str(item.get("value_type") or "string"),
                            "value": item.get("value"),
                            "description": str(item.get("description") or ""),
                            "created_at": now,
                            "updated_at": now,
                        }
                        for item in declared
                    ],
                )
        else:
            conversations.touch_conversation(session, turn.conversation_id)
        connection.execute(
            insert(_MESSAGES),
            {
                "id": turn.message_id,
                "created_at": now,
                "updated_at": now,
                "app_id": app.id,
                "conversation_id": turn.conversation_id,
                "task_id": self.spec.task_id,
                "end_user_id": self.end_user.id,
                "from_source": "api",
                "inputs": self.inputs,
                "query": self.query,
                "status": RunStatus.RUNNING.value,
                "idempotency_key": key.key if key else None,
                "request_hash": key.request_hash if key else None,
            },
        )
        run_files.write_message_files(session, turn.message_id, body.system.get("files") or [], now)
        connection.execute(
            insert(_RUNS),
            {
                "id": body.workflow_run_id,
                "tenant_id": app.tenant_id,
                "app_id": app.id,
                "workflow_id": body.workflow_id,
                "type": "chat",
                "triggered_from": "debugging" if self.draft else "app-run",
                "version": self.workflow.version,
                "task_id": self.spec.task_id,
                "conversation_id": turn.conversation_id,
                "message_id": turn.message_id,
                # As Dify keeps them: the turn's inputs with its query and files (what a log
                # search finds a turn by).
                "inputs": {
                    **self.inputs,
                    "sys.query": self.query,
                    "sys.files": body.system.get("files") or [],
                    "sys.conversation_id": turn.conversation_id,
                    "sys.user_id": body.system.get("user_id"),
                },
                "status": RunStatus.RUNNING.value,
                "outputs": {},
                "elapsed_time": 0.0,
                "total_tokens": 0,
                "total_steps": 0,
                "exceptions_count": 0,
                "created_from": "console" if self.draft else "service-api",
                "end_user_id": self.end_user.id,
                "created_at": now,
                "renewed_at": now if self.leased else None,
            },
        )


class ChatflowPlanner:
    """`services/runs/start.py`'s planner of chatflow turns."""

    def meta(self, app: App, request: ChatRequest, ids: RunIds) -> dict[str, str]:
        return {
            "mode": "advanced-chat",
            "message_id": ids.message_id,
            "conversation_id": request.conversation_id or ids.new_conversation_id,
            "created_at": str(int(ids.created_at.timestamp())),
        }

    def uses_default_provider(self, app: App) -> bool:
        return False

    def plan_ahead(self, *args: Any, **kwargs: Any) -> RunSpec | None:
        return None  # the graph comes from the database

    def plan(
        self,
        session: Session,
        *,
        app: App,
        end_user: EndUser,
        request: ChatRequest,
        settings: Settings,
        task_id: str,
        ids: RunIds,
        cache: Cache | None,
    ) -> ChatflowPlan:
        check_chatflow(app, request)
        workflow = (
            draft_of(session, app)
            if request.draft
            else workflow_for(session, app, request.workflow_id)
        )
        graph = dict(workflow.graph or {})
        WorkflowGraph.parse(graph).check_chatflow()
        history: list[tuple[str, str]] = []
        if request.conversation_id:
            conversation = conversations.get_conversation(
                session, app, end_user, request.conversation_id
            )
            if conversation.status != "normal":
                raise ConversationCompleted()
            inputs = dict(conversation.inputs or {})
            conversation_id = conversation.id
            history = chat.conversation_history(session, conversation, DEFAULT_MEMORY_TURNS)
            variables = conversation_values(session, conversation_id)
            dialogue_count = conversation.dialogue_count
            new = False
        else:
            inputs = check_inputs(graph, request.inputs)
            conversation_id = ids.new_conversation_id
            variables = {
                str(item["name"]): item.get("value") for item in declared_variables(workflow)
            }
            dialogue_count = 0
            new = True
        # Checked against the workflow's `file_upload` feature, kept as the turn's message_files.
        files = run_files.checked_files(session, app, request.files, workflow.features or {})
        refs = model_refs(session, app, graph, settings, cache)
        run_id = str(uuid.uuid4())
        system = {
            "query": request.query,
            "files": files,
            "conversation_id": conversation_id,
            "user_id": end_user.session_id,
            "dialogue_count": dialogue_count + 1,
            "app_id": app.id,
            "workflow_id": workflow.id,
            "workflow_run_id": run_id,
        }
        spec = run_spec(
            task_id=task_id,
            app=app,
            end_user=end_user,
            ids=ids,
            workflow=workflow,
            body=WorkflowRunBody(
                workflow_run_id=run_id,
                workflow_id=workflow.id,
                graph=graph,
                inputs=inputs,
                system=system,
                mode="advanced-chat",
                model_refs=refs,
                chat=ChatTurn(
                    message_id=ids.message_id,
                    conversation_id=conversation_id,
                    query=request.query,
                    history=history,
                    variables=variables,
                ),
                annotation=app_annotations.annotation_plan(app, request.query),
            ),
        )
        return ChatflowPlan(
            spec=spec,
            ids=ids,
            end_user=end_user,
            workflow=workflow,
            inputs=inputs,
            query=request.query,
            new_conversation=new,
            leased=settings.runs.executor == "inline",
            draft=request.draft,
        )

    def asynchronous(self, request: ChatRequest) -> bool:
        return False

    fingerprint = staticmethod(chat.fingerprint)
    check = staticmethod(check_chatflow)

    def names(self, spec: RunSpec) -> dict[str, str]:
        turn = spec.body.chat
        return {"message_id": turn.message_id, "conversation_id": turn.conversation_id}

    keyed_run = staticmethod(chat.keyed_run)
    stored_events = staticmethod(chat.stored_run_events)


def finish_turn(connection: Connection, result: Any) -> dict[str, Any]:
    """Write a chatflow turn's end onto its message, its conversation's turn count and its
    variables (in the caller's transaction); the `message_end` metadata."""
    turn: ChatTurn = result.chat
    now = utcnow()
    usage = {
        "prompt_tokens": result.usage.prompt_tokens,
        "completion_tokens": result.usage.completion_tokens,
        "total_tokens": result.usage.total_tokens,
        "total_price": "0",
        "currency": "USD",
        "latency": result.latency,
    }
    metadata: dict[str, Any] = {"usage": usage, "retriever_resources": []}
    if result.annotation_reply is not None:
        metadata["annotation_reply"] = result.annotation_reply
    status = {"succeeded": "succeeded", "partial-succeeded": "succeeded"}.get(
        result.status, result.status
    )
    connection.execute(
        update(_MESSAGES)
        .where(_MESSAGES.c.id == turn.message_id, _MESSAGES.c.status == RunStatus.RUNNING.value)
        .values(
            status=status,
            answer=result.answer,
            error=result.error,
            message_tokens=result.usage.prompt_tokens,
            answer_tokens=result.usage.completion_tokens,
            provider_response_latency=result.latency,
            message_metadata=metadata,
            finished_at=now,
            updated_at=now,
        )
    )
    conversations.count_turn(connection, turn.conversation_id, now)
    if result.annotation_reply is not None:
        app_annotations.count_hit(
            connection, result.annotation_reply["id"], turn.message_id, result.annotation_score
        )
    for name, value in (result.conversation_variables or {}).items():
        if turn.variables.get(name) != value:
            connection.execute(
                update(_VARIABLES)
                .where(
                    _VARIABLES.c.conversation_id == turn.conversation_id,
                    _VARIABLES.c.name == name,
                )
                .values(value=value, updated_at=now)
            )
    return metadata
