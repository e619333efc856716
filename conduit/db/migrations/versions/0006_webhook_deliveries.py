"""webhook deliveries: each app's signing secret, callback deliveries and their attempts

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 14:30:00.000000

An app's webhook secret is stored encrypted with a key derived from the server secret, which
a migration does not hold (the db package imports nothing above it, and `conduit migrate` may
run where the secret is not configured): apps created before this revision get theirs the
first time one is needed (`conduit/services/webhooks.py:ensure_secret`), in that transaction.
A delivery's `task_id` is a plain unique string, not a foreign key: the async task's row
belongs to the run pipeline and may be removed on its own schedule.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import conduit.db.models.base

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = conduit.db.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('app_webhook_secrets',
    sa.Column('app_id', sa.String(length=36), nullable=False),
    sa.Column('encrypted_secret', sa.Text(), nullable=False),
    sa.Column('encrypted_previous_secret', sa.Text(), nullable=True),
    sa.Column('previous_valid_until', UTC_DATETIME, nullable=True),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.Column('rotated_at', UTC_DATETIME, nullable=True),
    sa.ForeignKeyConstraint(['app_id'], ['apps.id'], name=op.f('fk_app_webhook_secrets_app_id_apps'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('app_id', name=op.f('pk_app_webhook_secrets'))
    )
    op.create_table('webhook_deliveries',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('app_id', sa.String(length=36), nullable=False),
    sa.Column('task_id', sa.String(length=64), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.Enum('pending', 'delivered', 'dead', name='webhook_delivery_status', native_enum=False, length=32), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('round_from', sa.Integer(), nullable=False),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.Column('next_attempt_at', UTC_DATETIME, nullable=True),
    sa.Column('delivered_at', UTC_DATETIME, nullable=True),
    sa.Column('dead_at', UTC_DATETIME, nullable=True),
    sa.ForeignKeyConstraint(['app_id'], ['apps.id'], name=op.f('fk_webhook_deliveries_app_id_apps'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
    sa.UniqueConstraint('task_id', name=op.f('uq_webhook_deliveries_task_id'))
    )
    op.create_index('ix_webhook_deliveries_app_status_created', 'webhook_deliveries', ['app_id', 'status', 'created_at'], unique=False)
    op.create_index(op.f('ix_webhook_deliveries_created_at'), 'webhook_deliveries', ['created_at'], unique=False)
    op.create_table('webhook_attempts',
    sa.Column('delivery_id', sa.String(length=36), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('started_at', UTC_DATETIME, nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['delivery_id'], ['webhook_deliveries.id'], name=op.f('fk_webhook_attempts_delivery_id_webhook_deliveries'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_attempts')),
    sa.UniqueConstraint('delivery_id', 'number', name=op.f('uq_webhook_attempts_delivery_id_number'))
    )


def downgrade() -> None:
    op.drop_table('webhook_attempts')
    op.drop_index(op.f('ix_webhook_deliveries_created_at'), table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_app_status_created', table_name='webhook_deliveries')
    op.drop_table('webhook_deliveries')
    op.drop_table('app_webhook_secrets')
