"""knowledge bases

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 12:15:00.000000

Datasets (knowledge bases), the rules that split their documents, documents with their
indexing stages, progress and lease, segments, and the apps that use a dataset
(`conduit/db/models/dataset.py`). The vector and keyword indexes come later, in tables of
their own.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import conduit.db.models.base

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('datasets',
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('permission', sa.Enum('only_me', 'all_team_members', 'partial_members', name='dataset_permission', native_enum=False, length=32), nullable=False),
    sa.Column('data_source_type', sa.String(length=32), nullable=True),
    sa.Column('indexing_technique', sa.Enum('high_quality', 'economy', name='indexing_technique', native_enum=False, length=32), nullable=True),
    sa.Column('embedding_model', sa.String(length=255), nullable=True),
    sa.Column('embedding_model_provider', sa.String(length=255), nullable=True),
    sa.Column('retrieval_model', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('doc_form', sa.String(length=32), nullable=False),
    sa.Column('built_in_field_enabled', sa.Boolean(), nullable=False),
    sa.Column('enable_api', sa.Boolean(), nullable=False),
    sa.Column('icon_info', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('runtime_mode', sa.String(length=32), nullable=False),
    sa.Column('chunk_structure', sa.String(length=32), nullable=True),
    sa.Column('created_by', sa.String(length=36), nullable=False),
    sa.Column('updated_by', sa.String(length=36), nullable=True),
    sa.Column('embedding_key', sa.String(length=255), nullable=True),
    sa.Column('embedding_dimension', sa.Integer(), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_datasets_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_datasets')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_datasets_tenant_id_name'))
    )
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_datasets_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('app_dataset_joins',
    sa.Column('app_id', sa.String(length=36), nullable=False),
    sa.Column('dataset_id', sa.String(length=36), nullable=False),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['apps.id'], name=op.f('fk_app_dataset_joins_app_id_apps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_app_dataset_joins_dataset_id_datasets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_app_dataset_joins')),
    sa.UniqueConstraint('app_id', 'dataset_id', name=op.f('uq_app_dataset_joins_app_id_dataset_id'))
    )
    with op.batch_alter_table('app_dataset_joins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_app_dataset_joins_dataset_id'), ['dataset_id'], unique=False)

    op.create_table('dataset_process_rules',
    sa.Column('dataset_id', sa.String(length=36), nullable=False),
    sa.Column('mode', sa.Enum('automatic', 'custom', 'hierarchical', name='process_mode', native_enum=False, length=32), nullable=False),
    sa.Column('rules', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('created_by', sa.String(length=36), nullable=False),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_dataset_process_rules_dataset_id_datasets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_process_rules'))
    )
    with op.batch_alter_table('dataset_process_rules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dataset_process_rules_dataset_id'), ['dataset_id'], unique=False)

    op.create_table('documents',
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('dataset_id', sa.String(length=36), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('data_source_type', sa.String(length=32), nullable=False),
    sa.Column('data_source_info', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('dataset_process_rule_id', sa.String(length=36), nullable=True),
    sa.Column('batch', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('created_from', sa.String(length=32), nullable=False),
    sa.Column('created_by', sa.String(length=36), nullable=False),
    sa.Column('created_api_request_id', sa.String(length=36), nullable=True),
    sa.Column('processing_started_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('parsing_completed_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cleaning_completed_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('splitting_completed_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('completed_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('paused_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('stopped_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('word_count', sa.Integer(), nullable=False),
    sa.Column('tokens', sa.Integer(), nullable=False),
    sa.Column('indexing_latency', sa.Float(), nullable=True),
    sa.Column('is_paused', sa.Boolean(), nullable=False),
    sa.Column('paused_by', sa.String(length=36), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('indexing_status', sa.Enum('waiting', 'parsing', 'cleaning', 'splitting', 'indexing', 'completed', 'error', 'paused', name='indexing_status', native_enum=False, length=32), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('disabled_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('disabled_by', sa.String(length=36), nullable=True),
    sa.Column('archived', sa.Boolean(), nullable=False),
    sa.Column('archived_reason', sa.String(length=255), nullable=True),
    sa.Column('archived_by', sa.String(length=36), nullable=True),
    sa.Column('archived_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('doc_type', sa.String(length=40), nullable=True),
    sa.Column('doc_metadata', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('doc_form', sa.String(length=32), nullable=False),
    sa.Column('doc_language', sa.String(length=32), nullable=True),
    sa.Column('total_segments', sa.Integer(), nullable=False),
    sa.Column('completed_segments', sa.Integer(), nullable=False),
    sa.Column('index_generation', sa.Integer(), nullable=False),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.Column('lease_epoch', sa.Integer(), nullable=False),
    sa.Column('renewed_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('due_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('resumes', sa.Integer(), nullable=False),
    sa.Column('last_failure', sa.Text(), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_documents_dataset_id_datasets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_documents_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_documents'))
    )
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.create_index('ix_documents_dataset_batch', ['dataset_id', 'batch'], unique=False)
        batch_op.create_index('ix_documents_dataset_position', ['dataset_id', 'position'], unique=False)
        batch_op.create_index('ix_documents_status_renewed', ['indexing_status', 'renewed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_documents_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('document_segments',
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('dataset_id', sa.String(length=36), nullable=False),
    sa.Column('document_id', sa.String(length=36), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('answer', sa.Text(), nullable=True),
    sa.Column('word_count', sa.Integer(), nullable=False),
    sa.Column('tokens', sa.Integer(), nullable=False),
    sa.Column('keywords', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('index_node_id', sa.String(length=255), nullable=True),
    sa.Column('index_node_hash', sa.String(length=255), nullable=True),
    sa.Column('hit_count', sa.Integer(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('disabled_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('disabled_by', sa.String(length=36), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('created_by', sa.String(length=36), nullable=False),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=36), nullable=True),
    sa.Column('updated_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('indexing_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('completed_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('stopped_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['document_id'], ['documents.id'], name=op.f('fk_document_segments_document_id_documents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_document_segments')),
    sa.UniqueConstraint('document_id', 'generation', 'position', name=op.f('uq_document_segments_document_id_generation_position'))
    )
    with op.batch_alter_table('document_segments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_document_segments_dataset_id'), ['dataset_id'], unique=False)
        batch_op.create_index('ix_document_segments_document_status', ['document_id', 'status', 'position'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('document_segments', schema=None) as batch_op:
        batch_op.drop_index('ix_document_segments_document_status')
        batch_op.drop_index(batch_op.f('ix_document_segments_dataset_id'))

    op.drop_table('document_segments')
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_documents_tenant_id'))
        batch_op.drop_index('ix_documents_status_renewed')
        batch_op.drop_index('ix_documents_dataset_position')
        batch_op.drop_index('ix_documents_dataset_batch')

    op.drop_table('documents')
    with op.batch_alter_table('dataset_process_rules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dataset_process_rules_dataset_id'))

    op.drop_table('dataset_process_rules')
    with op.batch_alter_table('app_dataset_joins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_app_dataset_joins_dataset_id'))

    op.drop_table('app_dataset_joins')
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_datasets_tenant_id'))

    op.drop_table('datasets')
