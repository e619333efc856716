"""provider usage and quota; site settings

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import conduit.db.models.base

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('provider_credentials', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quota_limit', sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column('quota_used', sa.BigInteger(), server_default=sa.text('0'), nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                'last_used_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True
            )
        )

    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chat_color_theme', sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column(
                'chat_color_theme_inverted', sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
        batch_op.add_column(sa.Column('input_placeholder', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('custom_disclaimer', sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column(
                'use_icon_as_answer_icon', sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )


def downgrade() -> None:
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.drop_column('use_icon_as_answer_icon')
        batch_op.drop_column('custom_disclaimer')
        batch_op.drop_column('input_placeholder')
        batch_op.drop_column('chat_color_theme_inverted')
        batch_op.drop_column('chat_color_theme')

    with op.batch_alter_table('provider_credentials', schema=None) as batch_op:
        batch_op.drop_column('last_used_at')
        batch_op.drop_column('quota_used')
        batch_op.drop_column('quota_limit')
