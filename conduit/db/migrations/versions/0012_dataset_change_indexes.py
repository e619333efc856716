"""indexes for a dataset's latest change

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 16:35:00.000000

The latest `updated_at` of a dataset's documents and of its segments, each one index probe:
what tells a process that its in-memory vectors of the dataset are out of date
(`services/datasets/vectors.py:MatrixIndex`).
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.create_index('ix_documents_dataset_updated', ['dataset_id', 'updated_at'], unique=False)
    with op.batch_alter_table('document_segments', schema=None) as batch_op:
        batch_op.create_index('ix_document_segments_dataset_updated', ['dataset_id', 'updated_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('document_segments', schema=None) as batch_op:
        batch_op.drop_index('ix_document_segments_dataset_updated')
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.drop_index('ix_documents_dataset_updated')
