"""human input forms

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06 15:00:00.000000

Workflow runs that pause at a human-input node: each node's form (what it shows, its token,
how it was answered), the paused run's spec, which an answer resumes, and when it was resumed
(the takeover's clock for a run queued again); async tasks found by their run.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import conduit.db.models.base

revision: str = '0026'
down_revision: str | None = '0025'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = conduit.db.models.base.UTCDateTime(timezone=True)
_JSON = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), 'postgresql'
)


def upgrade() -> None:
    with op.batch_alter_table('workflow_runs') as batch:
        batch.add_column(sa.Column('resume_spec', _JSON, nullable=True))
        batch.add_column(sa.Column('resumed_at', _TIME, nullable=True))
    op.create_index('ix_async_tasks_record', 'async_tasks', ['record_id'])
    op.create_table(
        'human_input_forms',
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('app_id', sa.String(length=36), nullable=False),
        sa.Column('workflow_run_id', sa.String(length=36), nullable=False),
        sa.Column('task_id', sa.String(length=36), nullable=False),
        sa.Column('node_id', sa.String(length=255), nullable=False),
        sa.Column('node_title', sa.String(length=255), nullable=False),
        sa.Column('token', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('definition', _JSON, nullable=False),
        sa.Column('expiration_time', _TIME, nullable=False),
        sa.Column('created_at', _TIME, nullable=False),
        sa.Column('answer', _JSON, nullable=True),
        sa.Column('answered_at', _TIME, nullable=True),
        sa.Column('answered_by', sa.String(length=255), nullable=True),
        sa.Column('pending_resume', sa.Boolean(), nullable=False),
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(['app_id'], ['apps.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['workflow_run_id'], ['workflow_runs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token'),
        sa.UniqueConstraint('workflow_run_id', 'node_id'),
    )
    op.create_index('ix_human_input_forms_app_id', 'human_input_forms', ['app_id'])
    op.create_index('ix_human_input_forms_task_id', 'human_input_forms', ['task_id'])
    op.create_index(
        'ix_human_input_forms_waiting',
        'human_input_forms',
        ['expiration_time'],
        sqlite_where=sa.text("status = 'waiting'"),
        postgresql_where=sa.text("status = 'waiting'"),
    )
    op.create_index(
        'ix_human_input_forms_pending_resume',
        'human_input_forms',
        ['workflow_run_id'],
        sqlite_where=sa.text('pending_resume'),
        postgresql_where=sa.text('pending_resume'),
    )


def downgrade() -> None:
    op.drop_table('human_input_forms')
    op.drop_index('ix_async_tasks_record', table_name='async_tasks')
    with op.batch_alter_table('workflow_runs') as batch:
        batch.drop_column('resumed_at')
        batch.drop_column('resume_spec')
