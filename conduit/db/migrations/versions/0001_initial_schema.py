"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 06:03:32.745082
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import conduit.db.models.base
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table('accounts',
    sa.Column('email', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('status', sa.Enum('active', 'banned', name='account_status', native_enum=False, length=32), nullable=False),
    sa.Column('last_login_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('email', name=op.f('uq_accounts_email'))
    )
    op.create_table('outbox',
    sa.Column('task', sa.String(length=255), nullable=False),
    sa.Column('queue', sa.String(length=64), nullable=False),
    sa.Column('kwargs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('headers', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('status', sa.Enum('pending', 'dispatched', 'running', 'succeeded', 'failed', name='outbox_status', native_enum=False, length=32), nullable=False),
    sa.Column('send_attempts', sa.Integer(), nullable=False),
    sa.Column('run_count', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('available_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('dispatched_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('started_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_status_available', ['status', 'available_at'], unique=False)

    op.create_table('tenants',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('status', sa.Enum('normal', 'archive', name='tenant_status', native_enum=False, length=32), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenants'))
    )
    op.create_table('apps',
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('mode', sa.Enum('chat', 'completion', 'agent-chat', 'workflow', 'advanced-chat', name='app_mode', native_enum=False, length=32), nullable=False),
    sa.Column('icon_type', sa.Enum('emoji', 'image', name='icon_type', native_enum=False, length=32), nullable=False),
    sa.Column('icon', sa.String(length=255), nullable=False),
    sa.Column('icon_background', sa.String(length=32), nullable=False),
    sa.Column('status', sa.Enum('normal', 'abnormal', name='app_status', native_enum=False, length=32), nullable=False),
    sa.Column('enable_site', sa.Boolean(), nullable=False),
    sa.Column('enable_api', sa.Boolean(), nullable=False),
    sa.Column('model_config', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('max_active_requests', sa.Integer(), nullable=True),
    sa.Column('created_by', sa.String(length=36), nullable=True),
    sa.Column('updated_by', sa.String(length=36), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_apps_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_apps'))
    )
    with op.batch_alter_table('apps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_apps_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('console_sessions',
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('refresh_token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_console_sessions_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_console_sessions')),
    sa.UniqueConstraint('refresh_token_hash', name=op.f('uq_console_sessions_refresh_token_hash'))
    )
    with op.batch_alter_table('console_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_console_sessions_account_id'), ['account_id'], unique=False)

    op.create_table('tenant_account_joins',
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('role', sa.Enum('owner', 'admin', 'editor', 'normal', name='member_role', native_enum=False, length=32), nullable=False),
    sa.Column('current', sa.Boolean(), nullable=False),
    sa.Column('invited_by', sa.String(length=36), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_tenant_account_joins_account_id_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_tenant_account_joins_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenant_account_joins')),
    sa.UniqueConstraint('tenant_id', 'account_id', name=op.f('uq_tenant_account_joins_tenant_id_account_id'))
    )
    with op.batch_alter_table('tenant_account_joins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tenant_account_joins_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_tenant_account_joins_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('upload_files',
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('storage_type', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=512), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('extension', sa.String(length=32), nullable=False),
    sa.Column('mime_type', sa.String(length=255), nullable=True),
    sa.Column('hash', sa.String(length=64), nullable=True),
    sa.Column('created_by_role', sa.String(length=32), nullable=False),
    sa.Column('created_by', sa.String(length=36), nullable=True),
    sa.Column('used', sa.Boolean(), nullable=False),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_upload_files_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upload_files'))
    )
    with op.batch_alter_table('upload_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upload_files_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('api_tokens',
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('app_id', sa.String(length=36), nullable=True),
    sa.Column('type', sa.Enum('app', 'dataset', name='api_token_type', native_enum=False, length=32), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('token_prefix', sa.String(length=32), nullable=False),
    sa.Column('created_by', sa.String(length=36), nullable=True),
    sa.Column('last_used_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['apps.id'], name=op.f('fk_api_tokens_app_id_apps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_api_tokens_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash'))
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_tokens_app_id'), ['app_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_api_tokens_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('end_users',
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('app_id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('session_id', sa.String(length=255), nullable=False),
    sa.Column('external_user_id', sa.String(length=255), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('is_anonymous', sa.Boolean(), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['apps.id'], name=op.f('fk_end_users_app_id_apps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_end_users_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_end_users')),
    sa.UniqueConstraint('app_id', 'type', 'session_id', name=op.f('uq_end_users_app_id_type_session_id'))
    )
    with op.batch_alter_table('end_users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_end_users_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('installed_apps',
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('app_id', sa.String(length=36), nullable=False),
    sa.Column('app_owner_tenant_id', sa.String(length=36), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('is_pinned', sa.Boolean(), nullable=False),
    sa.Column('last_used_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['apps.id'], name=op.f('fk_installed_apps_app_id_apps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_installed_apps_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_installed_apps')),
    sa.UniqueConstraint('tenant_id', 'app_id', name=op.f('uq_installed_apps_tenant_id_app_id'))
    )
    with op.batch_alter_table('installed_apps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_installed_apps_app_id'), ['app_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_installed_apps_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('sites',
    sa.Column('app_id', sa.String(length=36), nullable=False),
    sa.Column('title', sa.String(length=255), nullable=False),
    sa.Column('icon_type', sa.String(length=32), nullable=False),
    sa.Column('icon', sa.String(length=255), nullable=False),
    sa.Column('icon_background', sa.String(length=32), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('default_language', sa.String(length=32), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('copyright', sa.String(length=255), nullable=True),
    sa.Column('privacy_policy', sa.String(length=255), nullable=True),
    sa.Column('customize_domain', sa.String(length=255), nullable=True),
    sa.Column('show_workflow_steps', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['apps.id'], name=op.f('fk_sites_app_id_apps'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sites')),
    sa.UniqueConstraint('app_id', name=op.f('uq_sites_app_id')),
    sa.UniqueConstraint('code', name=op.f('uq_sites_code'))
    )
    op.create_table('conversations',
    sa.Column('app_id', sa.String(length=36), nullable=False),
    sa.Column('mode', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('inputs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('introduction', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('from_source', sa.String(length=32), nullable=False),
    sa.Column('end_user_id', sa.String(length=36), nullable=True),
    sa.Column('account_id', sa.String(length=36), nullable=True),
    sa.Column('dialogue_count', sa.Integer(), nullable=False),
    sa.Column('is_deleted', sa.Boolean(), nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['apps.id'], name=op.f('fk_conversations_app_id_apps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['end_user_id'], ['end_users.id'], name=op.f('fk_conversations_end_user_id_end_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conversations'))
    )
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.create_index('ix_conversations_app_end_user_updated', ['app_id', 'end_user_id', 'updated_at'], unique=False)

    op.create_table('messages',
    sa.Column('app_id', sa.String(length=36), nullable=False),
    sa.Column('conversation_id', sa.String(length=36), nullable=True),
    sa.Column('task_id', sa.String(length=36), nullable=True),
    sa.Column('end_user_id', sa.String(length=36), nullable=True),
    sa.Column('account_id', sa.String(length=36), nullable=True),
    sa.Column('from_source', sa.String(length=32), nullable=False),
    sa.Column('inputs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('query', sa.Text(), nullable=False),
    sa.Column('answer', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('model_provider', sa.String(length=255), nullable=True),
    sa.Column('model_id', sa.String(length=255), nullable=True),
    sa.Column('message_tokens', sa.Integer(), nullable=False),
    sa.Column('answer_tokens', sa.Integer(), nullable=False),
    sa.Column('total_price', sa.Numeric(precision=12, scale=7), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('provider_response_latency', sa.Float(), nullable=False),
    sa.Column('message_metadata', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('finished_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['apps.id'], name=op.f('fk_messages_app_id_apps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_messages_conversation_id_conversations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_messages'))
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_app_created', ['app_id', 'created_at'], unique=False)
        batch_op.create_index('ix_messages_conversation_created', ['conversation_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_task_id'), ['task_id'], unique=False)

    op.create_table('message_feedbacks',
    sa.Column('app_id', sa.String(length=36), nullable=False),
    sa.Column('conversation_id', sa.String(length=36), nullable=True),
    sa.Column('message_id', sa.String(length=36), nullable=False),
    sa.Column('rating', sa.String(length=16), nullable=False),
    sa.Column('content', sa.Text(), nullable=True),
    sa.Column('from_source', sa.String(length=16), nullable=False),
    sa.Column('from_end_user_id', sa.String(length=36), nullable=True),
    sa.Column('from_account_id', sa.String(length=36), nullable=True),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', conduit.db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['apps.id'], name=op.f('fk_message_feedbacks_app_id_apps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_message_feedbacks_message_id_messages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_message_feedbacks')),
    sa.UniqueConstraint('message_id', 'from_source', 'from_end_user_id', 'from_account_id', name=op.f('uq_message_feedbacks_message_id_from_source_from_end_user_id_from_account_id'))
    )
    with op.batch_alter_table('message_feedbacks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_message_feedbacks_app_id'), ['app_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('message_feedbacks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_feedbacks_app_id'))

    op.drop_table('message_feedbacks')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_task_id'))
        batch_op.drop_index('ix_messages_conversation_created')
        batch_op.drop_index('ix_messages_app_created')

    op.drop_table('messages')
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_index('ix_conversations_app_end_user_updated')

    op.drop_table('conversations')
    op.drop_table('sites')
    with op.batch_alter_table('installed_apps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_installed_apps_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_installed_apps_app_id'))

    op.drop_table('installed_apps')
    with op.batch_alter_table('end_users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_end_users_tenant_id'))

    op.drop_table('end_users')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_api_tokens_app_id'))

    op.drop_table('api_tokens')
    with op.batch_alter_table('upload_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_upload_files_tenant_id'))

    op.drop_table('upload_files')
    with op.batch_alter_table('tenant_account_joins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tenant_account_joins_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_tenant_account_joins_account_id'))

    op.drop_table('tenant_account_joins')
    with op.batch_alter_table('console_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_console_sessions_account_id'))

    op.drop_table('console_sessions')
    with op.batch_alter_table('apps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_apps_tenant_id'))

    op.drop_table('apps')
    op.drop_table('tenants')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_status_available')

    op.drop_table('outbox')
    op.drop_table('accounts')

