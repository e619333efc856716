"""provider credentials: workspace model providers with encrypted API keys

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 06:47:19.471107
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import conduit.db.models.base
from sqlalchemy.dialects import postgresql

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('provider_credentials',
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('provider', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('base_url', sa.String(length=2048), nullable=False),
    sa.Column('encrypted_api_key', sa.Text(), nullable=True),
    sa.Column('models', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_provider_credentials_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provider_credentials')),
    sa.UniqueConstraint('tenant_id', 'provider', 'name', name=op.f('uq_provider_credentials_tenant_id_provider_name'))
    )


def downgrade() -> None:
    op.drop_table('provider_credentials')
