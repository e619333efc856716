"""workflow runs by their end

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 19:00:00.000000

An index on `workflow_runs.finished_at`: the logs' retention removes the runs that finished
before its horizon, oldest first, a batch at a time.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_workflow_runs_finished', 'workflow_runs', ['finished_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_workflow_runs_finished', table_name='workflow_runs')
