"""the embedding cache

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 12:50:00.000000

A vector per embedding model and text (`conduit/db/models/embedding.py`), keyed by the model's
key and the text's SHA-256, so indexing unchanged text again costs no model call.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import conduit.db.models.base

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = conduit.db.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'embedding_cache',
        sa.Column('model_key', sa.String(length=255), nullable=False),
        sa.Column('content_hash', sa.String(length=64), nullable=False),
        sa.Column('dimension', sa.Integer(), nullable=False),
        sa.Column('vector', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', _TIME, nullable=False),
        sa.PrimaryKeyConstraint('model_key', 'content_hash', name=op.f('pk_embedding_cache')),
    )


def downgrade() -> None:
    op.drop_table('embedding_cache')
