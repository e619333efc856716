"""api tool providers

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 12:40:00.000000

A workspace's custom API tools (Dify's custom tool providers): an OpenAPI 3 document, its
operations as parsed, and the key sent with each call (encrypted with the server's secret).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import conduit.db.models.base

revision: str = '0025'
down_revision: str | None = '0024'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = conduit.db.models.base.UTCDateTime(timezone=True)
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table(
        'api_tool_providers',
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('icon', _JSON, nullable=False),
        sa.Column('schema_type', sa.String(length=32), nullable=False),
        sa.Column('schema', sa.Text(), nullable=False),
        sa.Column('server_url', sa.Text(), nullable=False),
        sa.Column('operations', _JSON, nullable=False),
        sa.Column('credentials', _JSON, nullable=False),
        sa.Column('encrypted_api_key', sa.Text(), nullable=True),
        sa.Column('privacy_policy', sa.Text(), nullable=False),
        sa.Column('custom_disclaimer', sa.Text(), nullable=False),
        sa.Column('created_by', sa.String(length=36), nullable=False),
        sa.Column('created_at', _TIME, nullable=False),
        sa.Column('updated_at', _TIME, nullable=False),
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('tenant_id', 'name'),
    )


def downgrade() -> None:
    op.drop_table('api_tool_providers')
