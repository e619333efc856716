"""async runs' tasks

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 14:30:00.000000

An async run (`response_mode: "async"`) has a task row beside its run record: its owner, its
status as a poller sees it, its callback URL and its times (`conduit/db/models/task.py`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import conduit.db.models.base

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = conduit.db.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'async_tasks',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('app_id', sa.String(length=36), nullable=False),
        sa.Column('end_user_id', sa.String(length=36), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('record_id', sa.String(length=36), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('callback_url', sa.Text(), nullable=True),
        sa.Column('error_code', sa.String(length=64), nullable=True),
        sa.Column('error_message', sa.Text(), nullable=True),
        sa.Column('created_at', _TIME, nullable=False),
        sa.Column('started_at', _TIME, nullable=True),
        sa.Column('finished_at', _TIME, nullable=True),
        sa.ForeignKeyConstraint(['app_id'], ['apps.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['end_user_id'], ['end_users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_async_tasks_finished', 'async_tasks', ['finished_at'])
    op.create_index('ix_async_tasks_status_created', 'async_tasks', ['status', 'created_at'])


def downgrade() -> None:
    op.drop_index('ix_async_tasks_status_created', table_name='async_tasks')
    op.drop_index('ix_async_tasks_finished', table_name='async_tasks')
    op.drop_table('async_tasks')
