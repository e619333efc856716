"""provider rerank models

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 07:00:00.000000

The models a workspace provider serves at `POST {base_url}/rerank`, which a dataset's search
may rerank its candidates with.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0022'
down_revision: str | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('provider_credentials', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'rerank_models',
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
                nullable=False,
                server_default=sa.text("'[]'"),
            )
        )


def downgrade() -> None:
    with op.batch_alter_table('provider_credentials', schema=None) as batch_op:
        batch_op.drop_column('rerank_models')
