"""a provider's embedding models

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 19:05:00.000000

The embedding models a workspace provider serves (`POST {base_url}/embeddings`), beside its
chat models: what a dataset may name as its `embedding_model` (`services/datasets/embedders.py`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('provider_credentials', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'embedding_models',
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
                nullable=False,
                server_default=sa.text("'[]'"),
            )
        )


def downgrade() -> None:
    with op.batch_alter_table('provider_credentials', schema=None) as batch_op:
        batch_op.drop_column('embedding_models')
