"""message agent thoughts

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06 12:30:00.000000

An agent-chat run's rounds (Dify's `agent_thoughts`: each round's thought, tool calls and
observation), kept on its message: written with the run's end in the same UPDATE, or by the
takeover of a run whose executor died (from its event log).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0024'
down_revision: str | None = '0023'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('messages') as batch:
        batch.add_column(
            sa.Column(
                'agent_thoughts',
                sa.JSON(none_as_null=True).with_variant(
                    postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), 'postgresql'
                ),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table('messages') as batch:
        batch.drop_column('agent_thoughts')
