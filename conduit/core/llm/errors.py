"""Model errors, typed by cause and mapped to Dify's codes (all HTTP 400 on the wire, as Dify).

ModelError                      completion_request_error
├── ProviderNotConfigured       provider_not_initialize   (no provider / no credentials)
├── ProviderAuthError           provider_not_initialize   (401/403 from the provider)
├── ProviderQuotaExceeded       provider_quota_exceeded   (429 insufficient_quota)
├── ModelNotSupported           model_currently_not_support (unknown model)
├── ModelRateLimited            completion_request_error  (429; retryable)
├── ModelTimeout                completion_request_error  (connect/read timeout; retryable)
├── ModelServerError            completion_request_error  (5xx, connection errors; retryable)
├── ModelBadRequest             completion_request_error  (other 4xx)
└── ProviderUnavailable         completion_request_error  (circuit breaker open)
"""

from __future__ import annotations

from typing import ClassVar

from conduit.errors import ConduitError


class ModelError(ConduitError):
    code = "completion_request_error"
    status = 400
    default_message = "Completion request failed."
    retryable: ClassVar[bool] = False


class ProviderNotConfigured(ModelError):
    code = "provider_not_initialize"
    default_message = (
        "No valid model provider credentials found. Please go to Settings -> Model Provider to "
        "complete your provider credentials."
    )


class ProviderAuthError(ModelError):
    code = "provider_not_initialize"


class ProviderQuotaExceeded(ModelError):
    code = "provider_quota_exceeded"
    default_message = (
        "Your quota for the model provider has been exhausted. Please go to Settings -> Model "
        "Provider to complete your own provider credentials."
    )


class ModelNotSupported(ModelError):
    code = "model_currently_not_support"
    default_message = "The model is not supported by the provider."


class ModelRateLimited(ModelError):
    retryable = True


class ModelTimeout(ModelError):
    retryable = True


class ModelServerError(ModelError):
    retryable = True


class ModelBadRequest(ModelError):
    pass


class ProviderUnavailable(ModelError):
    default_message = "The model provider is unavailable; requests fail fast until it recovers."
