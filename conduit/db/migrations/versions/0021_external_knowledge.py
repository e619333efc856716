"""external knowledge

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 07:30:00.000000

Dify's external knowledge bases: a workspace's connections to external knowledge services
(endpoint and encrypted API key), and each external dataset's binding to one of them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import conduit.db.models.base

revision: str = '0021'
down_revision: str | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = conduit.db.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'external_knowledge_apis',
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('endpoint', sa.Text(), nullable=False),
        sa.Column('encrypted_api_key', sa.Text(), nullable=False),
        sa.Column('created_by', sa.String(length=36), nullable=False),
        sa.Column('created_at', _TIME, nullable=False),
        sa.Column('updated_by', sa.String(length=36), nullable=True),
        sa.Column('updated_at', _TIME, nullable=False),
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('tenant_id', 'name'),
    )
    op.create_table(
        'external_knowledge_bindings',
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('dataset_id', sa.String(length=36), nullable=False),
        sa.Column('external_knowledge_api_id', sa.String(length=36), nullable=False),
        sa.Column('external_knowledge_id', sa.String(length=512), nullable=False),
        sa.Column('created_by', sa.String(length=36), nullable=False),
        sa.Column('created_at', _TIME, nullable=False),
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['external_knowledge_api_id'], ['external_knowledge_apis.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('dataset_id'),
    )
    op.create_index(
        op.f('ix_external_knowledge_bindings_external_knowledge_api_id'),
        'external_knowledge_bindings',
        ['external_knowledge_api_id'],
    )


def downgrade() -> None:
    op.drop_index(
        op.f('ix_external_knowledge_bindings_external_knowledge_api_id'),
        table_name='external_knowledge_bindings',
    )
    op.drop_table('external_knowledge_bindings')
    op.drop_table('external_knowledge_apis')
