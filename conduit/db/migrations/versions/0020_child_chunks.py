"""child chunks

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 07:00:00.000000

Dify's parent-child chunking (`doc_form` `hierarchical_model`): the child chunks of a
document's segments, deleted with their segment.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import conduit.db.models.base

revision: str = '0020'
down_revision: str | None = '0019'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = conduit.db.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'child_chunks',
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('dataset_id', sa.String(length=36), nullable=False),
        sa.Column('document_id', sa.String(length=36), nullable=False),
        sa.Column('segment_id', sa.String(length=36), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('content', sa.Text(), nullable=False),
        sa.Column('word_count', sa.Integer(), nullable=False),
        sa.Column('index_node_id', sa.String(length=255), nullable=True),
        sa.Column('index_node_hash', sa.String(length=255), nullable=True),
        sa.Column('type', sa.String(length=16), nullable=False),
        sa.Column('created_by', sa.String(length=36), nullable=False),
        sa.Column('created_at', _TIME, nullable=False),
        sa.Column('updated_by', sa.String(length=36), nullable=True),
        sa.Column('updated_at', _TIME, nullable=False),
        sa.Column('content_hash', sa.String(length=64), nullable=False),
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(['segment_id'], ['document_segments.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(
        'ix_child_chunks_segment_position', 'child_chunks', ['segment_id', 'position']
    )
    op.create_index('ix_child_chunks_dataset_updated', 'child_chunks', ['dataset_id', 'updated_at'])
    op.create_index('ix_child_chunks_document', 'child_chunks', ['document_id'])


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        # The children's pgvector tables (made by the servers, one per width) refer to it.
        for (table,) in bind.execute(
            sa.text("SELECT tablename FROM pg_tables WHERE tablename LIKE 'rag_child_vectors_%'")
        ):
            op.drop_table(table)
    op.drop_index('ix_child_chunks_document', table_name='child_chunks')
    op.drop_index('ix_child_chunks_dataset_updated', table_name='child_chunks')
    op.drop_index('ix_child_chunks_segment_position', table_name='child_chunks')
    op.drop_table('child_chunks')
