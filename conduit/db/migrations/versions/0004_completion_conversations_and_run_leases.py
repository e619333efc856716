"""every completion message belongs to a conversation of its own; run leases

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 08:00:00.000000

Dify gives each completion message a conversation; earlier Conduit left `conversation_id`
null. Each such message gets a conversation whose id is the message's own (ids of different
tables never clash), holding its inputs, counted as one turn once the message finished.

A run's lease: `messages.renewed_at`, when its executor last said it is alive, and an index of
the running messages alone for the reaper.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import conduit.db.models.base

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_NAME = 'New conversation'


def upgrade() -> None:
    op.execute(
        sa.text(
            """
            INSERT INTO conversations (
                id, created_at, updated_at, app_id, mode, name, inputs, introduction, status,
                from_source, end_user_id, account_id, dialogue_count, is_deleted
            )
            SELECT m.id, m.created_at, m.updated_at, m.app_id, 'completion', :name, m.inputs,
                   '', 'normal', m.from_source, m.end_user_id, NULL,
                   CASE WHEN m.status IN ('succeeded', 'failed', 'stopped') THEN 1 ELSE 0 END,
                   :deleted
            FROM messages m
            WHERE m.conversation_id IS NULL
            """
        ).bindparams(name=DEFAULT_NAME, deleted=False)
    )
    op.execute(sa.text('UPDATE messages SET conversation_id = id WHERE conversation_id IS NULL'))
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'renewed_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True
            )
        )
    op.create_index(
        'ix_messages_running',
        'messages',
        ['created_at'],
        unique=False,
        sqlite_where=sa.text("status = 'running'"),
        postgresql_where=sa.text("status = 'running'"),
    )


def downgrade() -> None:
    op.drop_index('ix_messages_running', table_name='messages')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('renewed_at')
    op.execute(
        sa.text(
            """
            UPDATE messages SET conversation_id = NULL
            WHERE conversation_id = id
              AND conversation_id IN (SELECT id FROM conversations WHERE mode = 'completion')
            """
        )
    )
    op.execute(
        sa.text(
            """
            DELETE FROM conversations
            WHERE mode = 'completion' AND id NOT IN (
                SELECT conversation_id FROM messages WHERE conversation_id IS NOT NULL
            )
            """
        )
    )
