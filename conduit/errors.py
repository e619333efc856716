"""The one error hierarchy: every expected failure carries its wire `code` and HTTP `status`.

    ConduitError                      500 internal_server_error
    ├── InvalidParam                  400 invalid_param       (bad input; names the field)
    │   ├── BadRequest                400 bad_request
    │   ├── DocumentIndexing          400 document_indexing
    │   └── AppUnavailable, NotChatApp, NotCompletionApp, NoFileUploaded, ...  (400, Dify codes)
    ├── Unauthorized                  401 unauthorized
    │   ├── WebAppAccessDenied        401 web_app_access_denied
    │   └── WebAppAuthRequired        401 web_sso_auth_required
    ├── Forbidden                     403 forbidden
    │   ├── ArchivedDocumentImmutable 403 archived_document_immutable
    │   ├── AppMoreLikeThisDisabled   403 app_more_like_this_disabled
    │   ├── SuggestedQuestionsDisabled 403 app_suggested_questions_after_answer_disabled
    │   └── FileAccessDenied
    ├── NotFound                      404 not_found
    │   ├── AppNotFound               404 app_not_found
    │   ├── MemberNotFound            404 member_not_found
    │   ├── AccountNotFound           404 account_not_found
    │   ├── ApiKeyNotFound            404 api_key_not_found
    │   └── FileNotFound              404 file_not_found
    ├── Conflict                      409 conflict
    │   ├── AccountAlreadyMember      409 account_already_in_workspace
    │   ├── DatasetNameDuplicate      409 dataset_name_duplicate
    │   ├── DatasetInUse              409 dataset_in_use
    │   ├── IdempotencyKeyReused      409 idempotency_key_reused
    │   └── IdempotencyKeyInProgress  409 idempotency_key_in_progress
    ├── RequestTooLarge               413 request_entity_too_large
    ├── FileTooLarge                  413 file_too_large
    ├── UnsupportedMediaType          415 unsupported_media_type
    ├── UnsupportedFileType           415 unsupported_file_type
    ├── TooManyRequests               429 too_many_requests
    │   └── RateLimitError            429 rate_limit_error
    ├── ServiceUnavailable            503 service_unavailable  (Retry-After)
    │   ├── RedisUnavailable          503 redis_unavailable
    │   └── RunEventsLost             503 run_events_lost
    └── RunEnded                      (a run's own end, in its `error` event)
        ├── RunTimeLimitExceeded      400 run_time_limit_exceeded
        ├── RunTakenOver              409 run_taken_over
        └── RunInterrupted            503 run_interrupted

`conduit.api.errors` is the only place these become `{"code", "message", "status"}`.
Nothing outside `conduit.api` raises an HTTP exception.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ConduitError(Exception):
    """Base of every expected error: `code` and `status` are part of the wire contract."""

    code: ClassVar[str] = "internal_server_error"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "The server met an unexpected error."

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        self.message = message or self.default_message
        self.extra = extra
        super().__init__(self.message)


class InvalidParam(ConduitError):
    code = "invalid_param"
    status = 400
    default_message = "Invalid parameter."


class BadRequest(InvalidParam):
    code = "bad_request"
    default_message = "The request could not be understood."


class Unauthorized(ConduitError):
    code = "unauthorized"
    status = 401
    default_message = "Authentication is required."


class DocumentIndexing(InvalidParam):
    code = "document_indexing"
    default_message = "The document is being processed and cannot be edited."


class Forbidden(ConduitError):
    code = "forbidden"
    status = 403
    default_message = "You do not have permission to do this."


class ArchivedDocumentImmutable(Forbidden):
    code = "archived_document_immutable"
    default_message = "The archived document is not editable."


class AppMoreLikeThisDisabled(Forbidden):
    """The web tier's more-like-this on an app whose model config does not enable it."""

    code = "app_more_like_this_disabled"
    default_message = "The 'More like this' feature is disabled. Please refresh your page."


class SuggestedQuestionsDisabled(Forbidden):
    """The web tier's suggested questions on an app that does not enable them (the Service
    API answers 400 `bad_request` instead, as Dify)."""

    code = "app_suggested_questions_after_answer_disabled"
    default_message = (
        "The 'Suggested Questions After Answer' feature is disabled. Please refresh your page."
    )


class WebAppAccessDenied(Unauthorized):
    code = "web_app_access_denied"
    default_message = "You do not have permission to access this web app."


class WebAppAuthRequired(Unauthorized):
    code = "web_sso_auth_required"
    default_message = "Web app authentication required."


class NotFound(ConduitError):
    code = "not_found"
    status = 404
    default_message = "Not found."


class AppNotFound(NotFound):
    code = "app_not_found"
    default_message = "App not found."


class MemberNotFound(NotFound):
    code = "member_not_found"
    default_message = "Member not found."


class EndUserNotFound(NotFound):
    code = "end_user_not_found"
    default_message = "End user not found."


class AccountNotFound(NotFound):
    code = "account_not_found"
    default_message = "Account not found."


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"
    default_message = "API key not found."


class Conflict(ConduitError):
    code = "conflict"
    status = 409
    default_message = "The request conflicts with the current state."


class DatasetNameDuplicate(Conflict):
    code = "dataset_name_duplicate"
    default_message = "The dataset name already exists. Please modify your dataset name."


class DatasetInUse(Conflict):
    code = "dataset_in_use"
    default_message = (
        "The dataset is being used by some apps. Please remove the dataset from the apps before "
        "deleting it."
    )


class AccountAlreadyMember(Conflict):
    code = "account_already_in_workspace"
    default_message = "The account is already a member of this workspace."


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"
    default_message = (
        "This Idempotency-Key was already used with a different request; "
        "use a new key for a new request."
    )


class IdempotencyKeyInProgress(Conflict):
    code = "idempotency_key_in_progress"
    default_message = (
        "The run this Idempotency-Key started is still running and its events are not "
        "available; retry once it has ended."
    )


class RequestTooLarge(ConduitError):
    code = "request_entity_too_large"
    status = 413
    default_message = "The data value transmitted exceeds the capacity limit."  # werkzeug's


class UnsupportedMediaType(ConduitError):
    code = "unsupported_media_type"
    status = 415
    # werkzeug's, from `request.get_json()` (how Dify reads every JSON body)
    default_message = (
        "Did not attempt to load JSON data because the request Content-Type was not "
        "'application/json'."
    )


class TooManyRequests(ConduitError):
    code = "too_many_requests"
    status = 429
    default_message = "Too many requests. Please try again later."

    def __init__(self, message: str | None = None, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitError(TooManyRequests):
    """An end user of the web tier over their request rate (Dify's `InvokeRateLimitError`)."""

    code = "rate_limit_error"
    default_message = "Rate Limit Error"


class ServiceUnavailable(ConduitError):
    """A dependency or the server itself cannot serve now; `retry_after` seconds is a guess
    at when it might (the `Retry-After` header)."""

    code = "service_unavailable"
    status = 503
    default_message = "A component the server needs is unavailable."

    def __init__(self, message: str | None = None, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RedisUnavailable(ServiceUnavailable):
    """Redis (event logs, stop flags, limits) did not answer; nothing the request would have
    written was committed."""

    code = "redis_unavailable"
    default_message = "Redis is unavailable; retry shortly."


class RunEventsLost(ServiceUnavailable):
    """A run's event log vanished before its reader reached its end (Redis restarted without
    its data, or the log expired under a slow reader); what the run answered is stored with
    its message."""

    code = "run_events_lost"
    default_message = (
        "The run's events are no longer available (lost when Redis restarted, or expired); "
        "its answer is stored with its message."
    )


# --- Service API (/v1) errors with Dify's codes and messages --------------------------------


class AppUnavailable(InvalidParam):
    code = "app_unavailable"
    default_message = "App unavailable, please check your app configurations."


class NotChatApp(InvalidParam):
    code = "not_chat_app"
    default_message = "Please check if your app mode matches the right API route."


class NotWorkflowApp(InvalidParam):
    code = "not_workflow_app"
    default_message = "Please check if your Workflow app mode matches the right API route."


class NotCompletionApp(InvalidParam):
    code = "not_completion_app"
    default_message = "Please check if your Completion app mode matches the right API route."


class ConversationCompleted(InvalidParam):
    code = "conversation_completed"
    default_message = "The conversation has ended. Please start a new conversation."


class NoFileUploaded(InvalidParam):
    code = "no_file_uploaded"
    default_message = "Please upload your file."


class TooManyFiles(InvalidParam):
    code = "too_many_files"
    default_message = "Only one file is allowed."


class FilenameNotExists(InvalidParam):
    code = "filename_not_exists_error"
    default_message = "The specified filename does not exist."


class FileTooLarge(ConduitError):
    code = "file_too_large"
    status = 413
    default_message = "File size exceeded."


class UnsupportedFileType(ConduitError):
    code = "unsupported_file_type"
    status = 415
    default_message = "File type not allowed."


class NoAudioUploaded(InvalidParam):
    code = "no_audio_uploaded"
    default_message = "Please upload your audio."


class AudioTooLarge(ConduitError):
    code = "audio_too_large"
    status = 413
    default_message = "Audio size exceeded."


class UnsupportedAudioType(ConduitError):
    code = "unsupported_audio_type"
    status = 415
    default_message = "Audio type not allowed."


class ProviderNotSupportSpeechToText(InvalidParam):
    code = "provider_not_support_speech_to_text"
    default_message = "Provider not support speech to text."


class ProviderNotSupportTextToSpeech(InvalidParam):
    code = "provider_not_support_text_to_speech"
    default_message = "Provider not support text to speech."


class FileNotFound(NotFound):
    code = "file_not_found"
    default_message = "File not found."


class TaskNotFound(NotFound):
    code = "task_not_found"
    default_message = "Task not found."


class TaskExpired(NotFound):
    """An async run's task that existed and was removed after its retention."""

    code = "task_expired"
    default_message = "The task has expired: its result is kept for a limited time after it ends."


class FileAccessDenied(Forbidden):
    code = "file_access_denied"
    default_message = "File access denied."


class RunEnded(ConduitError):
    """A run ended by its lifecycle rather than by its work (its `error` event says why)."""


class RunTimeLimitExceeded(RunEnded):
    # 400, as Dify's model errors: a client must not retry it (the same run would reach the
    # same limit), which a 5xx or a 408 invites.
    code = "run_time_limit_exceeded"
    status = 400
    default_message = "The run reached its time limit and was ended; its partial answer is kept."


class RunTakenOver(RunEnded):
    code = "run_taken_over"
    status = 409
    default_message = (
        "The run was taken over elsewhere (its lease lapsed); its partial answer is kept."
    )


class RunInterrupted(RunEnded):
    # What the followers of a run whose executor died read last: 503, the work was not at
    # fault and a new run may succeed.
    code = "run_interrupted"
    status = 503
    default_message = (
        "The run was interrupted: the process running it stopped. Its partial answer is kept."
    )
