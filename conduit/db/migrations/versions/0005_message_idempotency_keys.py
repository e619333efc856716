"""a run's Idempotency-Key and request hash on its message

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 12:00:00.000000

A run-creating request may carry an `Idempotency-Key`: its message keeps the key and the
SHA-256 of the fields that define the run, and a partial unique index over (app, end user,
key) of the keyed messages alone lets exactly one run start per key (the model's docstring,
`conduit/db/models/conversation.py:Message`, says why on the message).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idempotency_key', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('request_hash', sa.String(length=64), nullable=True))
    op.create_index(
        'ux_messages_idempotency_key',
        'messages',
        ['app_id', 'end_user_id', 'idempotency_key'],
        unique=True,
        sqlite_where=sa.text('idempotency_key IS NOT NULL'),
        postgresql_where=sa.text('idempotency_key IS NOT NULL'),
    )


def downgrade() -> None:
    op.drop_index('ux_messages_idempotency_key', table_name='messages')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('request_hash')
        batch_op.drop_column('idempotency_key')
