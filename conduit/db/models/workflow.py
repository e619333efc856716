"""Workflows (a workflow or chatflow app's graph, draft and published versions), their runs,
the runs' node executions, and a chatflow conversation's variables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from conduit.db.models.base import Base, IdMixin, JsonType, TimestampMixin

DRAFT = "draft"


class Workflow(IdMixin, TimestampMixin, Base):
    """One version of an app's workflow: the draft (`version` "draft", edited in place) or a
    published one (`version` the time it was published; never changed after)."""

    __tablename__ = "workflows"
    __table_args__ = (Index("ix_workflows_app_version", "app_id", "version"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))  # "workflow" | "chat" (a chatflow)
    version: Mapped[str] = mapped_column(String(64), default=DRAFT)
    graph: Mapped[dict[str, Any]] = mapped_column(default=dict)
    features: Mapped[dict[str, Any]] = mapped_column(default=dict)
    environment_variables: Mapped[list[dict[str, Any]]] = mapped_column(JsonType, default=list)
    conversation_variables: Mapped[list[dict[str, Any]]] = mapped_column(JsonType, default=list)
    marked_name: Mapped[str] = mapped_column(String(255), default="")
    marked_comment: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str | None] = mapped_column(String(36), default=None)
    updated_by: Mapped[str | None] = mapped_column(String(36), default=None)


class WorkflowRun(IdMixin, Base):
    """One run of a workflow; also the record of its run (task id, lease, idempotency key),
    as a message is for a chat run."""

    __tablename__ = "workflow_runs"
    __table_args__ = (
        Index("ix_workflow_runs_app_created", "app_id", "created_at"),
        Index("ix_workflow_runs_finished", "finished_at"),  # the logs' retention
        Index(
            "ix_workflow_runs_running",
            "created_at",
            sqlite_where=text("status = 'running'"),
            postgresql_where=text("status = 'running'"),
        ),
        Index(
            "ux_workflow_runs_idempotency_key",
            "app_id",
            "end_user_id",
            "idempotency_key",
            unique=True,
            sqlite_where=text("idempotency_key IS NOT NULL"),
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(36))
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    workflow_id: Mapped[str] = mapped_column(String(36))
    type: Mapped[str] = mapped_column(String(32))  # "workflow" | "chat"
    triggered_from: Mapped[str] = mapped_column(String(32), default="app-run")  # or "debugging"
    version: Mapped[str] = mapped_column(String(64))
    task_id: Mapped[str | None] = mapped_column(String(36), index=True, default=None)
    conversation_id: Mapped[str | None] = mapped_column(String(36), default=None)
    message_id: Mapped[str | None] = mapped_column(String(36), default=None)
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(32), default="running")
    outputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    elapsed_time: Mapped[float] = mapped_column(Float, default=0.0)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    exceptions_count: Mapped[int] = mapped_column(Integer, default=0)
    created_from: Mapped[str] = mapped_column(String(32), default="service-api")
    end_user_id: Mapped[str | None] = mapped_column(String(36), default=None)
    account_id: Mapped[str | None] = mapped_column(String(36), default=None)
    created_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    renewed_at: Mapped[datetime | None] = mapped_column(default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    # A `paused` run's spec (`RunSpec.to_json`): what an answer to its forms resumes.
    resume_spec: Mapped[dict[str, Any] | None] = mapped_column(JsonType, default=None)
    # When it was last resumed (queued again): a run never renewed since is dead only long
    # after this, not after its creation.
    resumed_at: Mapped[datetime | None] = mapped_column(default=None)


class HumanInputForm(IdMixin, Base):
    """A human-input node's form in one run: what it shows (`definition`, the core's
    `PendingForm`), its token, and how it was answered. `waiting` until a person submits it
    (`submitted`) or its time runs out (`timeout`: the node's timeout branch) or the server's
    longest wait passes or the run is stopped (`expired`). `pending_resume`: answered, and the
    run not yet resumed for it."""

    __tablename__ = "human_input_forms"
    __table_args__ = (
        UniqueConstraint("workflow_run_id", "node_id"),
        Index(
            "ix_human_input_forms_waiting",
            "expiration_time",
            sqlite_where=text("status = 'waiting'"),
            postgresql_where=text("status = 'waiting'"),
        ),
        Index(
            "ix_human_input_forms_pending_resume",
            "workflow_run_id",
            sqlite_where=text("pending_resume"),
            postgresql_where=text("pending_resume"),
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(36))
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    workflow_run_id: Mapped[str] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    task_id: Mapped[str] = mapped_column(String(36), index=True)  # the execution that paused
    node_id: Mapped[str] = mapped_column(String(255))
    node_title: Mapped[str] = mapped_column(String(255))
    token: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="waiting")
    definition: Mapped[dict[str, Any]] = mapped_column(JsonType)
    expiration_time: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column()
    answer: Mapped[dict[str, Any] | None] = mapped_column(JsonType, default=None)
    answered_at: Mapped[datetime | None] = mapped_column(default=None)
    answered_by: Mapped[str | None] = mapped_column(String(255), default=None)
    pending_resume: Mapped[bool] = mapped_column(default=False)


class WorkflowNodeExecution(IdMixin, Base):
    """One node's execution in a run (one per item inside an iteration), as it ended."""

    __tablename__ = "workflow_node_executions"
    __table_args__ = (Index("ix_workflow_node_executions_run", "workflow_run_id", "index"),)

    tenant_id: Mapped[str] = mapped_column(String(36))
    app_id: Mapped[str] = mapped_column(String(36))
    workflow_id: Mapped[str] = mapped_column(String(36))
    workflow_run_id: Mapped[str] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    predecessor_node_id: Mapped[str | None] = mapped_column(String(255), default=None)
    node_id: Mapped[str] = mapped_column(String(255))
    node_type: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(255))
    iteration_id: Mapped[str | None] = mapped_column(String(255), default=None)
    loop_id: Mapped[str | None] = mapped_column(String(255), default=None)
    inputs: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    process_data: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    outputs: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text, default=None)
    elapsed_time: Mapped[float] = mapped_column(Float, default=0.0)
    execution_metadata: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class ConversationVariable(IdMixin, Base):
    """A chatflow conversation's variable (declared by its workflow, changed by assigners)."""

    __tablename__ = "conversation_variables"
    __table_args__ = (UniqueConstraint("conversation_id", "name"),)

    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    app_id: Mapped[str] = mapped_column(String(36), index=True)
    variable_id: Mapped[str] = mapped_column(String(255))  # the DSL's id of the declaration
    name: Mapped[str] = mapped_column(String(255))
    value_type: Mapped[str] = mapped_column(String(32))
    value: Mapped[Any] = mapped_column(JsonType, default=None)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
