"""qa sources

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 09:30:00.000000

Dify's Q&A documents (`doc_form` `qa_model`): each chunk of a document waiting for the
question-answer pairs a chat model writes about it, and then holding them until they become
the document's segments (the indexer's progress through the model calls).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import conduit.db.models.base

revision: str = '0023'
down_revision: str | None = '0022'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = conduit.db.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'qa_sources',
        sa.Column('document_id', sa.String(length=36), nullable=False),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('content', sa.Text(), nullable=False),
        sa.Column(
            'pairs',
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
            nullable=True,
        ),
        sa.Column('created_at', _TIME, nullable=False),
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(['document_id'], ['documents.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('document_id', 'generation', 'position'),
    )


def downgrade() -> None:
    op.drop_table('qa_sources')
