"""dataset tags and metadata fields

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 15:50:00.000000

A workspace's tags for its datasets and the bindings of tags to datasets (Dify's knowledge
tags), and the metadata fields of a dataset's documents (`conduit/db/models/dataset.py`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import conduit.db.models.base

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('tags',
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('created_by', sa.String(length=36), nullable=False),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_tags_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tags')),
    sa.UniqueConstraint('tenant_id', 'type', 'name', name=op.f('uq_tags_tenant_id_type_name'))
    )
    op.create_table('tag_bindings',
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('tag_id', sa.String(length=36), nullable=False),
    sa.Column('target_id', sa.String(length=36), nullable=False),
    sa.Column('created_by', sa.String(length=36), nullable=False),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['tag_id'], ['tags.id'], name=op.f('fk_tag_bindings_tag_id_tags'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['target_id'], ['datasets.id'], name=op.f('fk_tag_bindings_target_id_datasets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tag_bindings')),
    sa.UniqueConstraint('tag_id', 'target_id', name=op.f('uq_tag_bindings_tag_id_target_id'))
    )
    with op.batch_alter_table('tag_bindings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tag_bindings_target_id'), ['target_id'], unique=False)

    op.create_table('dataset_metadata',
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('dataset_id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('created_by', sa.String(length=36), nullable=False),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_dataset_metadata_dataset_id_datasets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_metadata')),
    sa.UniqueConstraint('dataset_id', 'name', name=op.f('uq_dataset_metadata_dataset_id_name'))
    )


def downgrade() -> None:
    op.drop_table('dataset_metadata')
    with op.batch_alter_table('tag_bindings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tag_bindings_target_id'))

    op.drop_table('tag_bindings')
    op.drop_table('tags')
