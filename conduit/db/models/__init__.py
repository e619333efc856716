"""ORM tables: the only home of them. Import from here."""

from conduit.db.models.account import (
    Account,
    AccountStatus,
    ConsoleSession,
    Membership,
    Role,
    Tenant,
    TenantStatus,
)
from conduit.db.models.annotation import AnnotationJob, MessageAnnotation
from conduit.db.models.app import (
    ApiToken,
    ApiTokenType,
    App,
    AppMode,
    AppStatus,
    IconType,
    InstalledApp,
    Site,
)
from conduit.db.models.base import Base, new_id, utcnow
from conduit.db.models.conversation import (
    Conversation,
    EndUser,
    Message,
    MessageFeedback,
    MessageFile,
    PinnedConversation,
    SavedMessage,
    UploadFile,
)
from conduit.db.models.dataset import (
    AppDatasetJoin,
    Dataset,
    DatasetMetadata,
    DatasetPermission,
    DatasetProcessRule,
    Document,
    DocumentSegment,
    IndexingStatus,
    IndexingTechnique,
    ProcessMode,
    Tag,
    TagBinding,
)
from conduit.db.models.embedding import CachedEmbedding
from conduit.db.models.outbox import OutboxMessage, OutboxStatus
from conduit.db.models.provider import ProviderCredential
from conduit.db.models.task import AsyncTask
from conduit.db.models.webhook import (
    AppWebhookSecret,
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
)
from conduit.db.models.workflow import (
    ConversationVariable,
    Workflow,
    WorkflowNodeExecution,
    WorkflowRun,
)

__all__ = [
    "Account",
    "AccountStatus",
    "AnnotationJob",
    "ApiToken",
    "ApiTokenType",
    "App",
    "AppDatasetJoin",
    "AppMode",
    "AppStatus",
    "AppWebhookSecret",
    "AsyncTask",
    "Base",
    "CachedEmbedding",
    "ConsoleSession",
    "Conversation",
    "ConversationVariable",
    "Dataset",
    "DatasetMetadata",
    "DatasetPermission",
    "DatasetProcessRule",
    "DeliveryStatus",
    "Document",
    "DocumentSegment",
    "EndUser",
    "IconType",
    "IndexingStatus",
    "IndexingTechnique",
    "InstalledApp",
    "Membership",
    "Message",
    "MessageAnnotation",
    "MessageFeedback",
    "MessageFile",
    "OutboxMessage",
    "OutboxStatus",
    "PinnedConversation",
    "ProcessMode",
    "ProviderCredential",
    "Role",
    "SavedMessage",
    "Site",
    "Tag",
    "TagBinding",
    "Tenant",
    "TenantStatus",
    "UploadFile",
    "WebhookAttempt",
    "WebhookDelivery",
    "Workflow",
    "WorkflowNodeExecution",
    "WorkflowRun",
    "new_id",
    "utcnow",
]
