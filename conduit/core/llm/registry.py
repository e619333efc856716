"""Which ChatModel serves a run: resolves a run's `model_ref` to a provider instance.

HTTP providers keep one aiohttp session per event loop (the API loop, and a worker thread's
loop in the embedded Celery executor), sharing one circuit breaker per endpoint; the local model
is one per process (its weights are memory-mapped once, its instances are locked).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from conduit.core.llm.circuit import CircuitBreaker
from conduit.core.llm.errors import ProviderNotConfigured
from conduit.core.llm.provider import ChatModel


@dataclass(frozen=True)
class ModelDefaults:
    """The server-wide provider (settings) and the knobs of every provider."""

    base_url: str | None = None
    api_key: str | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    max_retries: int = 2
    breaker_failures: int = 5
    breaker_reset: float = 30.0
    local_threads: int = 1
    local_pool: int = 1


# A workspace provider's endpoint and plain API key, by (provider id, workspace id): read and
# decrypted by the services layer (raises ProviderNotConfigured when it is gone).
Credentials = Callable[[str, str], dict[str, Any]]


class ModelRegistry:
    def __init__(self, defaults: ModelDefaults, *, credentials: Credentials | None = None) -> None:
        self._defaults = defaults
        self._credentials = credentials
        self._lock = threading.Lock()
        self._http: dict[tuple[str, str | None, int], ChatModel] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._local: ChatModel | None = None

    async def resolve(self, ref: dict[str, Any]) -> ChatModel:
        """The model for `ref` ({"provider": "local" | "openai_api_compatible", ...}).

        A workspace provider's ref carries only its id ({"credential_id", "tenant_id"}): its
        endpoint and API key are read and decrypted by `credentials` (given by the process's
        wiring), in the process that runs the model, so the plain key never travels (outbox
        row, broker, event log)."""
        if ref.get("credential_id"):
            if self._credentials is None:
                raise ProviderNotConfigured("Workspace model providers are not available here.")
            ref = await asyncio.to_thread(
                self._credentials, str(ref["credential_id"]), str(ref.get("tenant_id") or "")
            )
        provider = str(ref.get("provider") or "")
        if provider == "local":
            return self._local_model()
        if provider == "openai_api_compatible":
            base_url = str(ref.get("base_url") or self._defaults.base_url or "")
            if not base_url:
                raise ProviderNotConfigured()
            api_key = ref.get("api_key") or (
                self._defaults.api_key if not ref.get("base_url") else None
            )
            return self._http_model(base_url.rstrip("/"), api_key)
        raise ProviderNotConfigured(f"Unknown model provider {provider!r}.")

    def _http_model(self, base_url: str, api_key: str | None) -> ChatModel:
        from conduit.core.llm.openai_compatible import OpenAICompatibleChatModel

        key = (base_url, api_key, id(asyncio.get_running_loop()))
        with self._lock:
            model = self._http.get(key)
            if model is None:
                breaker = self._breakers.setdefault(
                    base_url,
                    CircuitBreaker(
                        failure_threshold=self._defaults.breaker_failures,
                        reset_after=self._defaults.breaker_reset,
                    ),
                )
                model = OpenAICompatibleChatModel(
                    base_url,
                    api_key,
                    connect_timeout=self._defaults.connect_timeout,
                    read_timeout=self._defaults.read_timeout,
                    max_retries=self._defaults.max_retries,
                    breaker=breaker,
                )
                self._http[key] = model
            return model

    def _local_model(self) -> ChatModel:
        from conduit.core.llm.local import LocalChatModel, local_model_available

        with self._lock:
            if self._local is None:
                available, how_to = local_model_available()
                if not available:
                    raise ProviderNotConfigured(how_to)
                self._local = LocalChatModel(
                    threads=self._defaults.local_threads, pool_size=self._defaults.local_pool
                )
            return self._local

    async def aclose(self) -> None:
        """Close the models created on the running loop (others belong to other loops)."""
        loop_id = id(asyncio.get_running_loop())
        with self._lock:
            mine = [key for key in self._http if key[2] == loop_id]
            models = [self._http.pop(key) for key in mine]
        for model in models:
            await model.aclose()
