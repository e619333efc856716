"""message files

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 09:15:00.000000

The files a chat or completion message was sent with (Dify's `message_files`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import conduit.db.models.base

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = conduit.db.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'message_files',
        sa.Column('message_id', sa.String(length=36), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('type', sa.String(length=32), nullable=False),
        sa.Column('transfer_method', sa.String(length=32), nullable=False),
        sa.Column('url', sa.Text(), nullable=True),
        sa.Column('upload_file_id', sa.String(length=36), nullable=True),
        sa.Column('belongs_to', sa.String(length=32), nullable=False),
        sa.Column('created_at', _TIME, nullable=False),
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(['message_id'], ['messages.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['upload_file_id'], ['upload_files.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(
        op.f('ix_message_files_message_id'), 'message_files', ['message_id'], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f('ix_message_files_message_id'), table_name='message_files')
    op.drop_table('message_files')
