"""site access mode

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06 18:00:00.000000

Who may use an app's web site (Dify's web app access mode): anyone with its link (`public`,
every existing site), or only the members of its workspace, signed in (`private_all`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0027'
down_revision: str | None = '0026'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('sites') as batch:
        batch.add_column(
            sa.Column('access_mode', sa.String(length=32), nullable=False, server_default='public')
        )


def downgrade() -> None:
    with op.batch_alter_table('sites') as batch:
        batch.drop_column('access_mode')
