"""Knowledge bases: datasets, their documents and segments, the rules that split them, and the
apps that use them. Field names and values are Dify's (its Knowledge API returns them as they
are); the columns Conduit adds say so."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from conduit.db.models.account import _enum
from conduit.db.models.base import Base, IdMixin, JsonType, TimestampMixin, utcnow


class DatasetPermission(enum.StrEnum):
    ONLY_ME = "only_me"
    ALL_TEAM_MEMBERS = "all_team_members"
    PARTIAL_MEMBERS = "partial_members"


class IndexingTechnique(enum.StrEnum):
    HIGH_QUALITY = "high_quality"  # embeddings (and the keyword index)
    ECONOMY = "economy"  # the keyword index only


class IndexingStatus(enum.StrEnum):
    WAITING = "waiting"
    PARSING = "parsing"
    CLEANING = "cleaning"
    SPLITTING = "splitting"
    INDEXING = "indexing"
    COMPLETED = "completed"
    ERROR = "error"
    PAUSED = "paused"


class ProcessMode(enum.StrEnum):
    AUTOMATIC = "automatic"
    CUSTOM = "custom"
    HIERARCHICAL = "hierarchical"


class Dataset(IdMixin, TimestampMixin, Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    provider: Mapped[str] = mapped_column(String(32), default="vendor")
    permission: Mapped[DatasetPermission] = mapped_column(
        _enum(DatasetPermission, "dataset_permission"), default=DatasetPermission.ONLY_ME
    )
    data_source_type: Mapped[str | None] = mapped_column(String(32), default=None)
    indexing_technique: Mapped[IndexingTechnique | None] = mapped_column(
        _enum(IndexingTechnique, "indexing_technique"), default=None
    )
    embedding_model: Mapped[str | None] = mapped_column(String(255), default=None)
    embedding_model_provider: Mapped[str | None] = mapped_column(String(255), default=None)
    retrieval_model: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    doc_form: Mapped[str] = mapped_column(String(32), default="text_model")
    built_in_field_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    enable_api: Mapped[bool] = mapped_column(Boolean, default=True)
    icon_info: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    runtime_mode: Mapped[str] = mapped_column(String(32), default="general")
    chunk_structure: Mapped[str | None] = mapped_column(String(32), default=None)
    created_by: Mapped[str] = mapped_column(String(36))
    updated_by: Mapped[str | None] = mapped_column(String(36), default=None)
    # Conduit's: the embedder's model key (`Embedder.model_key`) and vector length once the
    # first document is embedded; a dataset never mixes vectors of two models.
    embedding_key: Mapped[str | None] = mapped_column(String(255), default=None)
    embedding_dimension: Mapped[int | None] = mapped_column(Integer, default=None)


class DatasetProcessRule(IdMixin, Base):
    __tablename__ = "dataset_process_rules"

    dataset_id: Mapped[str] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    mode: Mapped[ProcessMode] = mapped_column(_enum(ProcessMode, "process_mode"))
    rules: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    created_by: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Document(IdMixin, TimestampMixin, Base):
    __tablename__ = "documents"
    __table_args__ = (
        Index("ix_documents_dataset_position", "dataset_id", "position"),
        Index("ix_documents_dataset_batch", "dataset_id", "batch"),
        # The indexing reaper's rows: unfinished documents by their last renewal.
        Index("ix_documents_status_renewed", "indexing_status", "renewed_at"),
        # The latest change of a dataset's documents, in one index probe (`MatrixIndex`).
        Index("ix_documents_dataset_updated", "dataset_id", "updated_at"),
    )

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    data_source_type: Mapped[str] = mapped_column(String(32), default="upload_file")
    data_source_info: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    dataset_process_rule_id: Mapped[str | None] = mapped_column(String(36), default=None)
    batch: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(255))
    created_from: Mapped[str] = mapped_column(String(32), default="api")
    created_by: Mapped[str] = mapped_column(String(36))
    created_api_request_id: Mapped[str | None] = mapped_column(String(36), default=None)
    processing_started_at: Mapped[datetime | None] = mapped_column(default=None)
    parsing_completed_at: Mapped[datetime | None] = mapped_column(default=None)
    cleaning_completed_at: Mapped[datetime | None] = mapped_column(default=None)
    splitting_completed_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    paused_at: Mapped[datetime | None] = mapped_column(default=None)
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)
    word_count: Mapped[int] = mapped_column(Integer, default=0)
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    indexing_latency: Mapped[float | None] = mapped_column(Float, default=None)
    is_paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_by: Mapped[str | None] = mapped_column(String(36), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    indexing_status: Mapped[IndexingStatus] = mapped_column(
        _enum(IndexingStatus, "indexing_status"), default=IndexingStatus.WAITING
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)
    disabled_by: Mapped[str | None] = mapped_column(String(36), default=None)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    archived_reason: Mapped[str | None] = mapped_column(String(255), default=None)
    archived_by: Mapped[str | None] = mapped_column(String(36), default=None)
    archived_at: Mapped[datetime | None] = mapped_column(default=None)
    doc_type: Mapped[str | None] = mapped_column(String(40), default=None)
    doc_metadata: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    doc_form: Mapped[str] = mapped_column(String(32), default="text_model")
    doc_language: Mapped[str | None] = mapped_column(String(32), default=None)
    # Conduit's: progress, and the lease that lets a dead indexer's document be taken over.
    total_segments: Mapped[int] = mapped_column(Integer, default=0)
    completed_segments: Mapped[int] = mapped_column(Integer, default=0)
    index_generation: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_epoch: Mapped[int] = mapped_column(Integer, default=0)
    renewed_at: Mapped[datetime | None] = mapped_column(default=None)
    due_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    resumes: Mapped[int] = mapped_column(Integer, default=0)
    last_failure: Mapped[str | None] = mapped_column(Text, default=None)


class DocumentSegment(IdMixin, Base):
    __tablename__ = "document_segments"
    __table_args__ = (
        # One row per position of one indexing generation: a repeated split writes nothing new.
        UniqueConstraint("document_id", "generation", "position"),
        Index("ix_document_segments_document_status", "document_id", "status", "position"),
        Index("ix_document_segments_dataset_updated", "dataset_id", "updated_at"),
    )

    tenant_id: Mapped[str] = mapped_column(String(36))
    dataset_id: Mapped[str] = mapped_column(String(36), index=True)
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    content: Mapped[str] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text, default=None)
    word_count: Mapped[int] = mapped_column(Integer)  # characters, as Dify counts
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    keywords: Mapped[list[str] | None] = mapped_column(JsonType, default=None)
    index_node_id: Mapped[str | None] = mapped_column(String(255), default=None)
    index_node_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    hit_count: Mapped[int] = mapped_column(Integer, default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)
    disabled_by: Mapped[str | None] = mapped_column(String(36), default=None)
    status: Mapped[str] = mapped_column(String(32), default="waiting")
    created_by: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(36), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    indexing_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)
    # Conduit's: the indexing generation that wrote it, and its text's SHA-256.
    generation: Mapped[int] = mapped_column(Integer, default=0)
    content_hash: Mapped[str] = mapped_column(String(64))


class ChildChunk(IdMixin, Base):
    """A child chunk of a parent segment (Dify's parent-child chunking, `hierarchical_model`):
    the children are what a search compares with the query, their parent is what it returns.
    Deleted with its segment."""

    __tablename__ = "child_chunks"
    __table_args__ = (
        Index("ix_child_chunks_segment_position", "segment_id", "position"),
        Index("ix_child_chunks_dataset_updated", "dataset_id", "updated_at"),
        Index("ix_child_chunks_document", "document_id"),
    )

    tenant_id: Mapped[str] = mapped_column(String(36))
    dataset_id: Mapped[str] = mapped_column(String(36))
    document_id: Mapped[str] = mapped_column(String(36))
    segment_id: Mapped[str] = mapped_column(ForeignKey("document_segments.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    content: Mapped[str] = mapped_column(Text)
    word_count: Mapped[int] = mapped_column(Integer)  # characters, as Dify counts
    index_node_id: Mapped[str | None] = mapped_column(String(255), default=None)
    index_node_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    type: Mapped[str] = mapped_column(String(16), default="automatic")  # or "customized"
    created_by: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(36), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Conduit's: its text's SHA-256 (its vector is the embedding cache's row of it).
    content_hash: Mapped[str] = mapped_column(String(64))


class QaSource(IdMixin, Base):
    """A chunk of a Q&A document (Dify's `qa_model`) waiting for, or holding, the question–answer
    pairs a chat model wrote about it (`pairs`: [[question, answer], …], None until written).
    The indexer keeps its progress here, so that a worker's death loses at most the chunks it
    was writing; the rows go when the pairs become the document's segments."""

    __tablename__ = "qa_sources"
    __table_args__ = (UniqueConstraint("document_id", "generation", "position"),)

    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    generation: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)
    content: Mapped[str] = mapped_column(Text)
    # (SQL NULL for None, never JSON `null`: the indexer asks `pairs IS NULL`.)
    pairs: Mapped[list[list[str]] | None] = mapped_column(
        JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql"),
        default=None,
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ExternalKnowledgeApi(IdMixin, Base):
    """A workspace's connection to an external knowledge service (Dify's external knowledge
    API "template"): its endpoint, to which `/retrieval` is added, and its API key (encrypted
    with the server's secret)."""

    __tablename__ = "external_knowledge_apis"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    endpoint: Mapped[str] = mapped_column(Text)
    encrypted_api_key: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(36), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ExternalKnowledgeBinding(IdMixin, Base):
    """An external dataset's source: which connection, and the knowledge id it asks for. A
    connection in use cannot be deleted (checked at the end of the statement, so a
    workspace's deletion takes both)."""

    __tablename__ = "external_knowledge_bindings"

    tenant_id: Mapped[str] = mapped_column(String(36))
    dataset_id: Mapped[str] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), unique=True
    )
    external_knowledge_api_id: Mapped[str] = mapped_column(
        ForeignKey("external_knowledge_apis.id"), index=True
    )
    external_knowledge_id: Mapped[str] = mapped_column(String(512))
    created_by: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AppDatasetJoin(IdMixin, Base):
    """An app's use of a dataset (its model config's `dataset_configs`)."""

    __tablename__ = "app_dataset_joins"
    __table_args__ = (UniqueConstraint("app_id", "dataset_id"),)

    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    dataset_id: Mapped[str] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Tag(IdMixin, Base):
    """A workspace's label for its datasets (Dify's tags of type `knowledge`)."""

    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("tenant_id", "type", "name"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(16), default="knowledge")
    name: Mapped[str] = mapped_column(String(255))
    created_by: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TagBinding(IdMixin, Base):
    """A tag on a dataset; both ends deleted take the binding with them."""

    __tablename__ = "tag_bindings"
    __table_args__ = (UniqueConstraint("tag_id", "target_id"),)

    tenant_id: Mapped[str] = mapped_column(String(36))
    tag_id: Mapped[str] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"))
    target_id: Mapped[str] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    created_by: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DatasetMetadata(IdMixin, Base):
    """A metadata field of a dataset's documents (Dify's `string`, `number` or `time`); the
    values live in each document's `doc_metadata`, by the field's name."""

    __tablename__ = "dataset_metadata"
    __table_args__ = (UniqueConstraint("dataset_id", "name"),)

    tenant_id: Mapped[str] = mapped_column(String(36))
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    created_by: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
