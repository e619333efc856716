"""web end users' pinned conversations and saved messages

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 10:00:00.000000

The web tier (`/api`): the conversations an end user pinned, and the completions they saved.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import conduit.db.models.base

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = conduit.db.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'pinned_conversations',
        sa.Column('app_id', sa.String(length=36), nullable=False),
        sa.Column('conversation_id', sa.String(length=36), nullable=False),
        sa.Column('end_user_id', sa.String(length=36), nullable=False),
        sa.Column('created_at', _TIME, nullable=False),
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(['app_id'], ['apps.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['end_user_id'], ['end_users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('conversation_id', 'end_user_id'),
    )
    op.create_index(
        op.f('ix_pinned_conversations_app_id'), 'pinned_conversations', ['app_id'], unique=False
    )
    op.create_table(
        'saved_messages',
        sa.Column('app_id', sa.String(length=36), nullable=False),
        sa.Column('message_id', sa.String(length=36), nullable=False),
        sa.Column('end_user_id', sa.String(length=36), nullable=False),
        sa.Column('created_at', _TIME, nullable=False),
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(['app_id'], ['apps.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['end_user_id'], ['end_users.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['message_id'], ['messages.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('message_id', 'end_user_id'),
    )
    op.create_index(
        'ix_saved_messages_app_end_user_created',
        'saved_messages',
        ['app_id', 'end_user_id', 'created_at'],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index('ix_saved_messages_app_end_user_created', table_name='saved_messages')
    op.drop_table('saved_messages')
    op.drop_index(op.f('ix_pinned_conversations_app_id'), table_name='pinned_conversations')
    op.drop_table('pinned_conversations')
