"""annotation hit histories

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 03:20:00.000000

The answers each annotation gave (Dify's `app_annotation_hit_histories`), and the import jobs
of annotations from a CSV file (`annotation_jobs.action` "import", with how many rows).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import conduit.db.models.base

revision: str = '0019'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = conduit.db.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'annotation_hit_histories',
        sa.Column('app_id', sa.String(length=36), nullable=False),
        sa.Column('annotation_id', sa.String(length=36), nullable=False),
        sa.Column('message_id', sa.String(length=36), nullable=False),
        sa.Column('question', sa.Text(), nullable=False),
        sa.Column('score', sa.Float(), nullable=False),
        sa.Column('annotation_question', sa.Text(), nullable=False),
        sa.Column('annotation_content', sa.Text(), nullable=False),
        sa.Column('created_at', _TIME, nullable=False),
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(['app_id'], ['apps.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(
            ['annotation_id'], ['message_annotations.id'], ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(
        op.f('ix_annotation_hit_histories_app_id'),
        'annotation_hit_histories',
        ['app_id'],
        unique=False,
    )
    op.create_index(
        op.f('ix_annotation_hit_histories_annotation_id'),
        'annotation_hit_histories',
        ['annotation_id'],
        unique=False,
    )
    with op.batch_alter_table('annotation_jobs') as batch:
        batch.add_column(sa.Column('record_count', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('annotation_jobs') as batch:
        batch.drop_column('record_count')
    op.drop_index(
        op.f('ix_annotation_hit_histories_annotation_id'), table_name='annotation_hit_histories'
    )
    op.drop_index(
        op.f('ix_annotation_hit_histories_app_id'), table_name='annotation_hit_histories'
    )
    op.drop_table('annotation_hit_histories')
