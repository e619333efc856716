"""annotations

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 00:20:00.000000

An app's annotations (Dify's `message_annotations`), each with its question's vector, and the
jobs that switch the app's annotation reply on and off.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import conduit.db.models.base

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = conduit.db.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'message_annotations',
        sa.Column('app_id', sa.String(length=36), nullable=False),
        sa.Column('conversation_id', sa.String(length=36), nullable=True),
        sa.Column('message_id', sa.String(length=36), nullable=True),
        sa.Column('question', sa.Text(), nullable=False),
        sa.Column('answer', sa.Text(), nullable=False),
        sa.Column('hit_count', sa.Integer(), nullable=False),
        sa.Column('account_id', sa.String(length=36), nullable=True),
        sa.Column('embedding_model_key', sa.String(length=255), nullable=True),
        sa.Column('vector', sa.LargeBinary(), nullable=True),
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('created_at', _TIME, nullable=False),
        sa.Column('updated_at', _TIME, nullable=False),
        sa.ForeignKeyConstraint(['app_id'], ['apps.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(
        op.f('ix_message_annotations_app_id'), 'message_annotations', ['app_id'], unique=False
    )
    op.create_index(
        op.f('ix_message_annotations_message_id'),
        'message_annotations',
        ['message_id'],
        unique=False,
    )
    op.create_table(
        'annotation_jobs',
        sa.Column('app_id', sa.String(length=36), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('score_threshold', sa.Float(), nullable=True),
        sa.Column('embedding_provider', sa.String(length=255), nullable=True),
        sa.Column('embedding_model', sa.String(length=255), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('created_at', _TIME, nullable=False),
        sa.Column('finished_at', _TIME, nullable=True),
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(['app_id'], ['apps.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(op.f('ix_annotation_jobs_app_id'), 'annotation_jobs', ['app_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_annotation_jobs_app_id'), table_name='annotation_jobs')
    op.drop_table('annotation_jobs')
    op.drop_index(op.f('ix_message_annotations_message_id'), table_name='message_annotations')
    op.drop_index(op.f('ix_message_annotations_app_id'), table_name='message_annotations')
    op.drop_table('message_annotations')
