"""Each dataset's embedding model: the local MiniLM (provider `conduit`) or a model a workspace
provider serves at `POST {base_url}/embeddings` (provider `workspace:<id>`, the model one of
its `embedding_models`).

`Embedders` is one per process and use (indexing wraps every model in the embedding cache;
queries are not cached). A remote model is built from the provider's row, read in the caller's
session, its API key decrypted in this process (it never travels); it is kept while the
provider's endpoint and key are unchanged, so its HTTP connections are reused across batches
and queries.

A remote model's vectors are keyed `workspace:<provider id>:<model>` in the embedding cache
and the vector index: pointing the provider at another server that names a model the same
asks for a re-index, as with Dify.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from conduit.core.llm.errors import ModelError, ProviderNotConfigured
from conduit.core.rag.embed.base import Embedder
from conduit.core.rag.embed.local import MODEL_ID as LOCAL_MODEL_ID
from conduit.core.rag.embed.openai_compatible import OpenAICompatibleEmbedder
from conduit.db.models import Dataset, ProviderCredential
from conduit.errors import InvalidParam
from conduit.infra.crypto import DecryptionError, cipher
from conduit.services.datasets.models import LOCAL_PROVIDER
from conduit.services.model_providers import (
    WORKSPACE_PREFIX,
    readable_providers,
    workspace_provider_id,
    workspace_reference,
)


class EmbeddingFailed(ModelError):
    """A query could not be embedded (the dataset's model refused or could not be reached):
    Dify's `completion_request_error`, naming the model and what it said."""

    default_message = "The dataset's embedding model failed."


def check_choice(
    session: Session, tenant_id: str, provider: str | None, model: str | None
) -> tuple[str, str] | None:
    """(provider, model) for a dataset, checked against what the workspace offers; None when
    neither is given (the local model is chosen at the first high-quality upload)."""
    if not model and not provider:
        return None
    if provider in (None, "", LOCAL_PROVIDER):
        if model == LOCAL_MODEL_ID:
            return LOCAL_PROVIDER, LOCAL_MODEL_ID
    elif isinstance(provider, str) and provider.startswith(WORKSPACE_PREFIX):
        row = session.scalars(
            readable_providers(tenant_id).where(
                ProviderCredential.id == provider.removeprefix(WORKSPACE_PREFIX)
            )
        ).first()
        if row is not None and isinstance(model, str) and model in (row.embedding_models or []):
            return provider, model
    offered = [f"{LOCAL_MODEL_ID!r} of provider {LOCAL_PROVIDER!r}"] + [
        f"{name!r} of provider {workspace_reference(row.id)!r}"
        for row in session.scalars(readable_providers(tenant_id))
        for name in row.embedding_models or []
    ]
    raise InvalidParam(
        f"embedding_model {model!r} of provider {provider!r} is not available: this workspace "
        f"offers {', '.join(offered)}."
    )


def available(session: Session, dataset: Dataset) -> bool:
    """Dify's `embedding_available`: the dataset's model can still be used (its provider
    exists and still lists it)."""
    provider_id = workspace_provider_id(dataset.embedding_model_provider)
    if provider_id is None:
        return True
    row = session.get(ProviderCredential, provider_id)
    return (
        row is not None
        and row.tenant_id == dataset.tenant_id
        and dataset.embedding_model in (row.embedding_models or [])
    )


_RemoteKey = tuple[str, str | None, str]  # the provider's base URL and sealed key, the model


@dataclass
class Embedders:
    """The process's embedding models, by dataset. `local` builds the local model (once, on
    first use); `wrap` puts a model behind the embedding cache, or leaves it as it is."""

    secret: str
    local: Callable[[], Embedder]
    wrap: Callable[[Embedder], Embedder] = field(default=lambda embedder: embedder)
    timeout: float = 30.0
    batch_size: int = 64
    _local: Embedder | None = None
    _remote: dict[str, tuple[_RemoteKey, Embedder, OpenAICompatibleEmbedder]] = field(
        default_factory=dict
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def for_dataset(self, session: Session, dataset: Dataset) -> Embedder:
        """The dataset's model (`ProviderNotConfigured` when its provider is gone or no longer
        serves it), read in `session`."""
        return self.for_model(
            session,
            dataset.tenant_id,
            dataset.embedding_model_provider,
            dataset.embedding_model,
            owner="dataset",
            remedy="or create a dataset on another model",
        )

    def for_model(
        self,
        session: Session,
        tenant_id: str,
        provider: str | None,
        model: str | None,
        *,
        owner: str,
        remedy: str,
    ) -> Embedder:
        """A workspace's `model` of `provider` (the local model unless the provider is a
        workspace's); `ProviderNotConfigured`, naming the `owner` and the `remedy`, when the
        provider is gone or no longer serves it."""
        provider_id = workspace_provider_id(provider)
        if provider_id is None:
            return self.local_model()
        row = session.get(ProviderCredential, provider_id)
        model = model or ""
        if row is None or row.tenant_id != tenant_id or model not in (row.embedding_models or []):
            raise ProviderNotConfigured(
                f"The {owner}'s embedding model {model!r} is no longer offered by its provider "
                f"{provider!r} in this workspace: add it to the provider's embedding_models "
                f"again, {remedy}."
            )
        key = (row.base_url, row.encrypted_api_key, model)
        with self._lock:
            held = self._remote.get(f"{row.id}:{model}")
            if held is not None and held[0] == key:
                return held[1]
            remote = self._build_remote(row, model)
            wrapped = self.wrap(remote)
            self._remote[f"{row.id}:{model}"] = (key, wrapped, remote)
        if held is not None:
            held[2].close()  # its endpoint or key changed: the old client is done with
        return wrapped

    def local_model(self) -> Embedder:
        with self._lock:
            if self._local is None:
                self._local = self.wrap(self.local())
            return self._local

    def _build_remote(self, row: ProviderCredential, model: str) -> OpenAICompatibleEmbedder:
        try:
            sealed = row.encrypted_api_key
            api_key = cipher(self.secret).decrypt(sealed) if sealed else None
        except DecryptionError as error:
            raise ProviderNotConfigured(str(error)) from None
        return OpenAICompatibleEmbedder(
            provider=workspace_reference(row.id),
            base_url=row.base_url,
            model=model,
            api_key=api_key,
            batch_size=self.batch_size,
            timeout=self.timeout,
        )
